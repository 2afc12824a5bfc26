// Package checkpoint is the on-disk and on-the-wire format of a session's
// state snapshot: versioned, checksummed, carrying the store's sequence
// number and the function's digest. See RATIONALE.md, "Checkpoints".
package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Version is the format version this package writes. It reads it and the
// versions before: 2 had no incarnation, and 1 also ended in a SHA-256 of
// the body instead of a CRC-32C (four times slower to check: 0.6 ms of a
// 1 MiB restore).
const Version = 3

// trailerSize is the size of the checksum that ends a checkpoint of
// version v, or 0 for a version this package does not read.
func trailerSize(v uint16) int {
	switch v {
	case 1:
		return sha256.Size
	case 2, 3:
		return crc32.Size
	}
	return 0
}

// castagnoli is CRC-32C, computed with the CPU's instruction where there
// is one.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum returns the trailer of body for version v.
func checksum(v uint16, body []byte) []byte {
	if v == 1 {
		sum := sha256.Sum256(body)
		return sum[:]
	}
	return binary.BigEndian.AppendUint32(nil, crc32.Checksum(body, castagnoli))
}

var magic = [6]byte{'X', 'F', 'C', 'K', 'P', 'T'}

// Errors of Decode. Every decoding error wraps ErrCorrupt or ErrVersion.
var (
	ErrCorrupt = errors.New("corrupt checkpoint")
	ErrVersion = errors.New("unsupported checkpoint version")
)

// Limits that keep a hostile or broken checkpoint from exhausting memory.
const (
	maxName    = 1 << 10
	maxKey     = 1 << 16
	maxValue   = 64 << 20
	maxEntries = 1 << 28
)

// Entry is one key of the state.
type Entry struct {
	Key   string
	Value []byte
	Stamp uint64
}

// Checkpoint is a session's state at one point.
type Checkpoint struct {
	Function string
	Session  string
	// Digest is the function module's digest when the checkpoint was taken.
	Digest string
	// Incarnation is the function's incarnation when the checkpoint was
	// taken: a function deleted and created again under its name has a new
	// one, and a checkpoint of the old one is not its session's. Empty in
	// checkpoints of version 2 and before.
	Incarnation string
	// Seq is the store's sequence number at the snapshot: every write with
	// a stamp up to Seq is in Entries.
	Seq     uint64
	Created time.Time
	Entries []Entry
}

// Size is the number of bytes of keys and values.
func (c *Checkpoint) Size() int64 {
	var n int64
	for _, e := range c.Entries {
		n += int64(len(e.Key) + len(e.Value))
	}
	return n
}

// Encode returns the checkpoint's bytes.
func (c *Checkpoint) Encode() []byte { return c.encode(Version) }

// encode writes format version v (the tests write the older ones).
func (c *Checkpoint) encode(v uint16) []byte {
	b := make([]byte, 0, 64+len(c.Function)+len(c.Session)+len(c.Digest)+len(c.Incarnation)+int(c.Size())+len(c.Entries)*12+sha256.Size)
	b = append(b, magic[:]...)
	b = binary.BigEndian.AppendUint16(b, v)
	b = appendString(b, c.Function)
	b = appendString(b, c.Session)
	b = appendString(b, c.Digest)
	if v >= 3 {
		b = appendString(b, c.Incarnation)
	}
	b = binary.AppendUvarint(b, c.Seq)
	b = binary.AppendVarint(b, c.Created.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(c.Entries)))
	for _, e := range c.Entries {
		b = appendString(b, e.Key)
		b = binary.AppendUvarint(b, uint64(len(e.Value)))
		b = append(b, e.Value...)
		b = binary.AppendUvarint(b, e.Stamp)
	}
	return append(b, checksum(v, b)...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decode checks and decodes a checkpoint. Values alias data.
func Decode(data []byte) (*Checkpoint, error) {
	if len(data) < len(magic)+2 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(data))
	}
	if !bytes.Equal(data[:len(magic)], magic[:]) {
		return nil, fmt.Errorf("%w: not a checkpoint (bad magic)", ErrCorrupt)
	}
	v := binary.BigEndian.Uint16(data[len(magic):])
	size := trailerSize(v)
	if size == 0 {
		return nil, fmt.Errorf("%w: version %d (this build reads 1 to %d)", ErrVersion, v, Version)
	}
	if len(data) < len(magic)+2+size {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(data))
	}
	body, sum := data[:len(data)-size], data[len(data)-size:]
	if !bytes.Equal(sum, checksum(v, body)) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	r := reader{b: body[len(magic)+2:]}
	c := &Checkpoint{Function: r.str(maxName, "function"), Session: r.str(maxName, "session"), Digest: r.str(maxName, "digest")}
	if v >= 3 {
		c.Incarnation = r.str(maxName, "incarnation")
	}
	c.Seq = r.uvarint("seq")
	c.Created = time.Unix(0, r.varint("created")).UTC()
	n := r.uvarint("entry count")
	if n > maxEntries || n > uint64(len(r.b)) {
		r.fail("entry count %d", n)
	}
	if r.err == nil {
		c.Entries = make([]Entry, 0, n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		e := Entry{Key: r.str(maxKey, "key")}
		e.Value = r.bytes(maxValue, "value")
		e.Stamp = r.uvarint("stamp")
		c.Entries = append(c.Entries, e)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return c, nil
}

// reader decodes fields; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: bad %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	r.b = nil
}

func (r *reader) uvarint(what string) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("%s", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint(what string) int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("%s", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(limit uint64, what string) []byte {
	n := r.uvarint(what + " length")
	if r.err != nil {
		return nil
	}
	if n > limit || n > uint64(len(r.b)) {
		r.fail("%s length %d", what, n)
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) str(limit uint64, what string) string { return string(r.bytes(limit, what)) }

// WriteFile writes data to path atomically: a temporary file, fsync,
// rename, and an fsync of the directory, so that a crash leaves either the
// old file or the new one.
func WriteFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ReadFile reads and decodes the checkpoint at path. The file is mapped
// read-only, not copied: the values of the checkpoint alias the mapping,
// which stays for the life of the process, so they must never be written
// (a session store never writes a value it holds). That keeps a restore
// off the Go heap: no copy, no heap growth, no garbage collection on the
// path of a ColdSession. A file that does not decode is unmapped and
// renamed to path.corrupt-<unix time> for inspection, and the error says
// where it went.
func ReadFile(path string) (*Checkpoint, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Decode(data)
	if err != nil {
		unmap()
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr == nil {
			return nil, fmt.Errorf("%w (kept aside as %s)", err, aside)
		}
		return nil, err
	}
	return c, nil
}

// mapFile maps path read-only (private). An empty file maps to nothing.
func mapFile(path string) ([]byte, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if size == 0 {
		return nil, func() {}, nil
	}
	if size > math.MaxInt32*4 {
		return nil, nil, fmt.Errorf("%w: %s is %d bytes", ErrCorrupt, path, size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		// A file system that cannot map: read it instead.
		b, rerr := os.ReadFile(path)
		return b, func() {}, rerr
	}
	return data, func() { _ = syscall.Munmap(data) }, nil
}
