//go:build !wasip1

package xfaas_test

import (
	"errors"
	"strings"
	"testing"

	xfaas "github.com/xfaas/xfaas/sdk/go"
	"github.com/xfaas/xfaas/sdk/go/xfaastest"
)

func TestRequest(t *testing.T) {
	xfaastest.Reset()
	xfaas.Handle(func(req *xfaas.Request) ([]byte, error) {
		in := req.Input()
		if again := req.Input(); &again[0] != &in[0] {
			t.Error("Input read the body twice")
		}
		return []byte(req.Function() + "|" + req.Session() + "|" + string(in)), nil
	})
	out, err := xfaastest.Do(xfaastest.Request{Body: []byte("body"), Session: "5e55", Function: "fn"})
	if string(out) != "fn|5e55|body" || err != nil {
		t.Errorf("output %q, %v; want fn|5e55|body", out, err)
	}
	big := make([]byte, 1<<20)
	big[len(big)-1] = 'z'
	xfaas.Handle(func(req *xfaas.Request) ([]byte, error) { return req.Input(), nil })
	if out, err := xfaastest.Do(xfaastest.Request{Body: big}); len(out) != len(big) || out[len(out)-1] != 'z' || err != nil {
		t.Errorf("echo of a 1 MiB body: %d bytes, %v", len(out), err)
	}
}

func TestHandlerError(t *testing.T) {
	xfaastest.Reset()
	xfaas.Handle(func(*xfaas.Request) ([]byte, error) { return []byte("ignored"), errors.New("it broke") })
	_, err := xfaastest.Invoke("")
	var fe *xfaastest.FunctionError
	if !errors.As(err, &fe) || fe.Status == 0 || fe.Message != "it broke" {
		t.Errorf("Invoke = %#v; want a function error with message \"it broke\"", err)
	}
}

func TestOutputTooLarge(t *testing.T) {
	xfaastest.Reset()
	xfaas.Handle(func(*xfaas.Request) ([]byte, error) { return []byte("out"), nil })
	xfaastest.FailNext("set_output", xfaas.ErrValueTooLarge)
	if _, err := xfaastest.Invoke(""); err == nil || err.Error() != "xfaas: set_output: value too large" {
		t.Errorf("Invoke = %v; want a function error about set_output", err)
	}
}

func TestHandleNilPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Handle(nil) did not panic")
		}
	}()
	xfaas.Handle(nil)
}

func TestLog(t *testing.T) {
	xfaastest.Reset()
	xfaas.Handle(func(*xfaas.Request) ([]byte, error) {
		xfaas.Debug("d")
		xfaas.Info("i")
		xfaas.Warn("w")
		xfaas.Error("e")
		xfaas.Log(7, "seven")
		return nil, nil
	})
	if _, err := xfaastest.Invoke(""); err != nil {
		t.Fatal(err)
	}
	want := []xfaastest.LogLine{
		{Level: xfaas.LevelDebug, Msg: "d"},
		{Level: xfaas.LevelInfo, Msg: "i"},
		{Level: xfaas.LevelWarn, Msg: "w"},
		{Level: xfaas.LevelError, Msg: "e"},
		{Level: 7, Msg: "seven"},
	}
	got := xfaastest.Logs()
	if len(got) != len(want) {
		t.Fatalf("logs = %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("log line %d = %v; want %v", i, got[i], want[i])
		}
	}
	if s := xfaas.LevelWarn.String() + " " + xfaas.Level(7).String(); s != "warn level(7)" {
		t.Errorf("Level strings = %q", s)
	}
}

// A critical section that a request leaves open applies nothing.
func TestOpenSectionIsDroppedAtTheEndOfTheRequest(t *testing.T) {
	xfaastest.Reset()
	xfaas.Handle(func(req *xfaas.Request) ([]byte, error) {
		_, _, err := req.State().GetLinear("k")
		return nil, err
	})
	if _, err := xfaastest.Invoke(""); err != nil {
		t.Fatal(err)
	}
	state(t, func(st *xfaas.State) error {
		if !sectionClosed(t, st, "k") {
			t.Error("the next request found the section of the previous one open")
		}
		return nil
	})
}

// The output is bounded as on the platform: 6 MiB is the most a request
// answers, and past it set_output refuses and the request fails saying so.
func TestOutputLimit(t *testing.T) {
	xfaastest.Reset()
	for _, size := range []int{6 << 20, 6<<20 + 1} {
		xfaas.Handle(func(*xfaas.Request) ([]byte, error) { return make([]byte, size), nil })
		out, err := xfaastest.Invoke("")
		switch {
		case size <= 6<<20 && (err != nil || len(out) != size):
			t.Errorf("an output of %d bytes: %d bytes, %v", size, len(out), err)
		case size > 6<<20 && (err == nil || err.Error() != "xfaas: set_output: value too large"):
			t.Errorf("an output of %d bytes: %d bytes, %v; want a function error about set_output", size, len(out), err)
		}
	}
}

// A log line keeps its first 4 KiB, as on the platform.
func TestLogLinesAreCutAt4KiB(t *testing.T) {
	xfaastest.Reset()
	line := strings.Repeat("x", 4<<10) + "cut"
	xfaas.Handle(func(*xfaas.Request) ([]byte, error) { xfaas.Info(line); return nil, nil })
	if _, err := xfaastest.Invoke(""); err != nil {
		t.Fatal(err)
	}
	logs := xfaastest.Logs()
	if len(logs) != 1 {
		t.Fatalf("logged %d lines; want 1", len(logs))
	}
	if logs[0].Msg != line[:4<<10] {
		t.Errorf("logged %d bytes; want the first 4096", len(logs[0].Msg))
	}
}
