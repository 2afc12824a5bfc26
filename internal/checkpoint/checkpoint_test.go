package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sample() *Checkpoint {
	return &Checkpoint{Function: "counter", Session: "0123456789abcdef0123456789abcdef", Digest: "sha256:00ff", Incarnation: "5f0e",
		Seq: 42, Created: time.Unix(1700000000, 5).UTC(), Entries: []Entry{
			{Key: "count", Value: []byte("17"), Stamp: 40},
			{Key: "empty", Value: []byte{}, Stamp: 41},
			{Key: "big", Value: bytes.Repeat([]byte{7}, 100_000), Stamp: 42},
		}}
}

func TestRoundTrip(t *testing.T) {
	c := sample()
	got, err := Decode(c.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip changed the checkpoint:\n%+v\n%+v", got.Entries[:2], c.Entries[:2])
	}
	empty := &Checkpoint{Function: "f", Session: "default", Created: time.Unix(0, 0).UTC(), Entries: []Entry{}}
	if got, err := Decode(empty.Encode()); err != nil || len(got.Entries) != 0 {
		t.Fatalf("empty: %+v %v", got, err)
	}
}

// Every corruption is an error: no byte of a checkpoint can change
// without Decode noticing.
func TestCorruptMatrix(t *testing.T) {
	good := sample().Encode()
	small := (&Checkpoint{Function: "f", Session: "s", Entries: []Entry{{Key: "k", Value: []byte("v"), Stamp: 1}}}).Encode()
	for i := range small {
		for bit := range 8 {
			bad := bytes.Clone(small)
			bad[i] ^= 1 << bit
			if _, err := Decode(bad); err == nil {
				t.Fatalf("flipping bit %d of byte %d went unnoticed", bit, i)
			}
		}
	}
	for n := range len(small) {
		if _, err := Decode(small[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	cases := map[string]struct {
		data []byte
		want error
		says string
	}{
		"bad magic":     {append([]byte("NOTACKPT"), good[8:]...), ErrCorrupt, "magic"},
		"future format": {withVersion(good, Version+1), ErrVersion, fmt.Sprintf("version %d", Version+1)},
		"trailing data": {resum(append(bytes.Clone(good[:len(good)-crc32.Size]), 0)), ErrCorrupt, "trailing"},
		"short body":    {resum(good[:20]), ErrCorrupt, "bad"},
		"huge count":    {resum(hugeCount()), ErrCorrupt, "entry count"},
		"empty":         {nil, ErrCorrupt, "too short"},
	}
	for name, c := range cases {
		_, err := Decode(c.data)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v; want %v mentioning %q", name, err, c.want, c.says)
		}
	}
}

// withVersion rewrites the version and fixes the checksum, as a newer
// writer would produce.
func withVersion(data []byte, v uint16) []byte {
	b := bytes.Clone(data[:len(data)-crc32.Size])
	binary.BigEndian.PutUint16(b[6:], v)
	return resum(b)
}

// resum appends a valid checksum to body (without its old one).
func resum(body []byte) []byte {
	return append(bytes.Clone(body), checksum(Version, body)...)
}

// Checkpoints of the older versions still restore: version 2 without an
// incarnation, version 1 also with a SHA-256 trailer.
func TestReadsOlderVersions(t *testing.T) {
	c := sample()
	for _, v := range []uint16{1, 2} {
		got, err := Decode(c.encode(v))
		if err != nil || got.Seq != c.Seq || got.Digest != c.Digest || got.Incarnation != "" || len(got.Entries) != len(c.Entries) {
			t.Fatalf("version %d: %+v, %v", v, got, err)
		}
	}
	v1 := c.encode(1)
	v1[len(v1)-1] ^= 1
	if _, err := Decode(v1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 1 with a bad SHA-256: %v", err)
	}
	if got, err := Decode(c.Encode()); err != nil || got.Incarnation != c.Incarnation {
		t.Fatalf("version %d keeps the incarnation: %+v, %v", Version, got, err)
	}
}

func hugeCount() []byte {
	b := append([]byte{}, magic[:]...)
	b = binary.BigEndian.AppendUint16(b, Version)
	for range 4 { // function, session, digest, incarnation
		b = binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, 1)
	b = binary.AppendVarint(b, 0)
	return binary.AppendUvarint(b, 1<<40)
}

func TestFilesAreAtomicAndCorruptionIsKeptAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fn", "session.ckpt")
	c := sample()
	if err := WriteFile(path, c.Encode()); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil || got.Seq != c.Seq || len(got.Entries) != 3 {
		t.Fatalf("read back: %+v %v", got, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	data, _ := os.ReadFile(path)
	data[len(data)/2] ^= 0xff
	os.WriteFile(path, data, 0o600)
	_, err = ReadFile(path)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "kept aside") {
		t.Fatalf("corrupt file: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("the corrupt file is still where a restore would read it")
	}
	matches, _ := filepath.Glob(path + ".corrupt-*")
	if len(matches) != 1 {
		t.Fatalf("corrupt copy not kept: %v", matches)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sample().Encode())
	f.Add((&Checkpoint{}).Encode())
	f.Add([]byte("XFCKPT\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrVersion", err)
			}
			return
		}
		if again := c.Encode(); !bytes.Equal(again, data) {
			t.Fatal("a decoded checkpoint does not encode back to its bytes")
		}
	})
}

func BenchmarkDecode1MiB(b *testing.B) {
	c := &Checkpoint{Function: "f", Session: "s"}
	for i := range 1024 {
		c.Entries = append(c.Entries, Entry{Key: "k" + string(rune('a'+i%26)) + strings.Repeat("x", i%7), Value: make([]byte, 1024), Stamp: uint64(i)})
	}
	data := c.Encode()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
