package fnconfig

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseDefaults(t *testing.T) {
	for _, in := range []string{"", "  ", "{}"} {
		c, err := Parse([]byte(in))
		if err != nil || !reflect.DeepEqual(c, Default()) {
			t.Fatalf("Parse(%q) = %+v, %v; want the defaults", in, c, err)
		}
	}
	c, err := Parse([]byte(`{"max_workers": 2, "lock": "optimistic"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.MaxWorkers, want.Lock = 2, "optimistic"
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v, want %+v", c, want)
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]string{
		`{"max_workers": 0}`:              "max_workers",
		`{"max_workers": -3}`:             "max_workers",
		`{"max_containers": 100000}`:      "max_containers",
		`{"worker_memory_mb": 5000}`:      "worker_memory_mb",
		`{"timeout_ms": 0}`:               "timeout_ms",
		`{"lock": "central"}`:             "lock",
		`{"durability": "hope"}`:          "durability",
		`{"max_wrokers": 3}`:              "unknown field",
		`{"max_workers": "ten"}`:          "cannot unmarshal",
		`[1, 2]`:                          "cannot unmarshal",
		`{"max_workers": 2} {}`:           "trailing data",
		`{"max_workers": 2`:               "unexpected EOF",
		`{"keep_alive_s": 1.5}`:           "cannot unmarshal",
		`{"worker_cpu_millicores": 0}`:    "worker_cpu_millicores",
		`{"durability": null, "x": "y"}`:  "unknown field",
		`{"depends_on": ["Orders"]}`:      "not a function name",
		`{"depends_on": [""]}`:            "not a function name",
		`{"depends_on": ["-x"]}`:          "not a function name",
		`{"depends_on": ["a.b"]}`:         "not a function name",
		`{"depends_on": ["a", "b", "a"]}`: "twice",
		`{"depends_on": "orders"}`:        "cannot unmarshal",
		`{"depends_on": [1]}`:             "cannot unmarshal",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) = %v; want ErrInvalid mentioning %q", in, err, want)
		}
	}
}

func TestDependsOn(t *testing.T) {
	c, err := Parse([]byte(`{"depends_on": ["orders", "user_profiles", "0-stock"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"orders", "user_profiles", "0-stock"}; !reflect.DeepEqual(c.DependsOn, want) {
		t.Fatalf("depends_on = %q; want %q", c.DependsOn, want)
	}
	if d := Default().DependsOn; len(d) != 0 {
		t.Fatalf("default depends_on = %q; want none", d)
	}
	names := make([]string, MaxDependsOn+1)
	for i := range names {
		names[i] = fmt.Sprintf("f%d", i)
	}
	c = Default()
	c.DependsOn = names[:MaxDependsOn]
	if err := c.Validate(); err != nil {
		t.Fatalf("%d dependencies: %v", MaxDependsOn, err)
	}
	c.DependsOn = names
	if err := c.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "at most 16") {
		t.Fatalf("%d dependencies: %v; want ErrInvalid", len(names), err)
	}
}

func TestValidFunctionName(t *testing.T) {
	for _, name := range []string{"a", "0", "orders", "user_profiles", "a-b", strings.Repeat("x", 63)} {
		if !ValidFunctionName(name) {
			t.Errorf("ValidFunctionName(%q) = false", name)
		}
	}
	for _, name := range []string{"", "_a", "-a", "A", "a.b", "a b", "a*", "a>", "é", strings.Repeat("x", 64)} {
		if ValidFunctionName(name) {
			t.Errorf("ValidFunctionName(%q) = true", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "{}", `{"max_workers": 3, "lock": "optimistic"}`, `{"timeout_ms": -1}`, `[`, `{"depends_on": ["a", "b"]}`, `{"depends_on": ["a", "a"]}`} {
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
