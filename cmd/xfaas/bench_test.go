package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A tiny `xfaas bench` runs end to end against a real redis-server: every
// required figure is in results.json (a positive number, or the reason it
// is not available), the report and the plots exist, and no Redis, baseline
// worker or container process outlives it.
func TestBenchTinyRun(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is required (Debian package redis-server; `make test` installs it): %v", err)
	}
	dir := t.TempDir()
	out, data := filepath.Join(dir, "out"), filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, xfaasBin, "bench", "--out", out, "--data", data,
		"--workers", "2", "--containers", "1", "--clients", "1,2", "--access-clients", "1", "--rates", "50",
		"--cold-samples", "2", "--duration", "300ms", "--warmup", "50ms",
		"--burst-before", "500ms", "--burst-after", "500ms", "--burst-limits", "1,2")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xfaas bench: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "bench: [") {
		t.Errorf("no progress lines on stderr:\n%s", stderr.String())
	}
	checkResults(t, filepath.Join(out, "results.json"))
	report, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil || !bytes.Contains(report, []byte("xfaas/redis")) {
		t.Errorf("report.md: %v; want a report with xfaas/redis ratios", err)
	}
	for _, png := range []string{"access_latency", "throughput_ro", "throughput_rmw", "throughput_rmw_linear",
		"open_loop_ro", "closed_latency_ro", "cold_start", "burst_cdf", "memory_per_worker"} {
		b, err := os.ReadFile(filepath.Join(out, png+".png"))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s.png: %v; want a PNG", png, err)
		}
	}
	if procs := processesMentioning(t, data); len(procs) > 0 {
		t.Errorf("processes still running after xfaas bench:\n%s", strings.Join(procs, "\n"))
	}
}

func checkResults(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		PeakThroughput map[string]map[string]float64 `json:"peak_throughput"`
		ColdStartMS    map[string]any                `json:"cold_start_ms"`
		Errors         []string                      `json:"errors"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Errorf("the run recorded errors: %q", res.Errors)
	}
	for _, wl := range []string{"ro", "rmw", "rmw_linear"} {
		for _, k := range []string{"xfaas", "redis", "ratio"} {
			if v := res.PeakThroughput[wl][k]; !(v > 0) {
				t.Errorf("peak_throughput.%s.%s = %v; want a positive number", wl, k, v)
			}
		}
	}
	for _, k := range []string{"fork", "copy_session", "cold_session", "cold_session_restore_1mb", "traditional"} {
		switch v := res.ColdStartMS[k].(type) {
		case float64:
			if !(v > 0) {
				t.Errorf("cold_start_ms.%s = %v; want a positive number", k, v)
			}
		case string:
			if !strings.HasPrefix(v, "not available: ") || len(v) < len("not available: ")+10 {
				t.Errorf("cold_start_ms.%s = %q; want a number or a reason", k, v)
			}
		default:
			t.Errorf("cold_start_ms.%s = %v; want a number or a reason", k, v)
		}
	}
}

// processesMentioning lists the running processes whose command line or
// working directory mentions s (redis-server rewrites its command line, but
// runs in its --dir).
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, path := range dirs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // ended meanwhile
		}
		cwd, _ := os.Readlink(filepath.Join(filepath.Dir(path), "cwd"))
		if cmdline := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})); strings.Contains(cmdline, s) || strings.Contains(cwd, s) {
			found = append(found, filepath.Base(filepath.Dir(path))+": "+cmdline)
		}
	}
	return found
}

// A stray argument is an error at once, not a benchmark run with the flags
// after it ignored: "xfaas bench quick" must not start the full run.
func TestBenchRefusesArguments(t *testing.T) {
	dir := t.TempDir()
	r := runCLI(t, nil, "", "bench", "--value-size", "1", "quick", "--out", filepath.Join(dir, "out"), "--data", filepath.Join(dir, "data"))
	if r.code == 0 || !strings.Contains(r.stderr, "bench takes no arguments; got 1") || strings.Contains(r.stderr, "starting") {
		t.Fatalf("xfaas bench quick: %+v; want an error about the argument, before anything starts", r)
	}
}

// A bad benchmark config is refused before the platform and Redis start.
func TestBenchRefusesABadConfigFirst(t *testing.T) {
	dir := t.TempDir()
	r := runCLI(t, nil, "", "bench", "--value-size", "1", "--out", filepath.Join(dir, "out"), "--data", filepath.Join(dir, "data"))
	if r.code == 0 || !strings.Contains(r.stderr, "value size must be 8 B to 1 MiB") || strings.Contains(r.stderr, "starting") {
		t.Fatalf("xfaas bench --value-size 1: %+v; want the config error before anything starts", r)
	}
}
