package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The built binary is a shim when asked, and a plugin otherwise.
func TestBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "xfaas-driver")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	status := filepath.Join(dir, "status")
	if out, err := exec.Command(bin, "shim", "--status", status, "--", "/bin/sh", "-c", "exit 4").CombinedOutput(); err != nil {
		t.Fatalf("shim: %v\n%s", err, out)
	}
	data, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		ExitCode int `json:"exit_code"`
	}
	if err := json.Unmarshal(data, &st); err != nil || st.ExitCode != 4 {
		t.Errorf("status %s, %v; want exit code 4", data, err)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "plugin") {
		t.Errorf("run without Nomad: %v, %s; want go-plugin's refusal", err, out)
	}
}
