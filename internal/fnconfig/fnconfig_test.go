package fnconfig

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDefaults(t *testing.T) {
	for _, in := range []string{"", "  ", "{}"} {
		c, err := Parse([]byte(in))
		if err != nil || c != Default() {
			t.Fatalf("Parse(%q) = %+v, %v; want the defaults", in, c, err)
		}
	}
	c, err := Parse([]byte(`{"max_workers": 2, "lock": "optimistic"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.MaxWorkers, want.Lock = 2, "optimistic"
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]string{
		`{"max_workers": 0}`:             "max_workers",
		`{"max_workers": -3}`:            "max_workers",
		`{"max_containers": 100000}`:     "max_containers",
		`{"worker_memory_mb": 5000}`:     "worker_memory_mb",
		`{"timeout_ms": 0}`:              "timeout_ms",
		`{"lock": "central"}`:            "lock",
		`{"durability": "hope"}`:         "durability",
		`{"max_wrokers": 3}`:             "unknown field",
		`{"max_workers": "ten"}`:         "cannot unmarshal",
		`[1, 2]`:                         "cannot unmarshal",
		`{"max_workers": 2} {}`:          "trailing data",
		`{"max_workers": 2`:              "unexpected EOF",
		`{"keep_alive_s": 1.5}`:          "cannot unmarshal",
		`{"worker_cpu_millicores": 0}`:   "worker_cpu_millicores",
		`{"durability": null, "x": "y"}`: "unknown field",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) = %v; want ErrInvalid mentioning %q", in, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "{}", `{"max_workers": 3, "lock": "optimistic"}`, `{"timeout_ms": -1}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse accepted an invalid config: %v", verr)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
	})
}
