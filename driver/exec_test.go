package driver

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
)

type bufCloser struct{ bytes.Buffer }

func (*bufCloser) Close() error { return nil }

// `nomad alloc exec` runs a command in the task's directory and
// environment, with its exit code; streaming passes stdin through and
// refuses a terminal.
func TestExecTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d, h := e.driver()
	task := e.task(h, &TaskConfig{}, false)
	task.Env["XFAAS_TEST"] = "exec-env"
	e.start(h, task)

	res, err := h.ExecTask(task.ID, []string{"sh", "-c", `echo "$XFAAS_TEST"; pwd; echo oops >&2; exit 3`}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Stdout)
	if res.ExitResult.ExitCode != 3 || !strings.Contains(out, "exec-env") || !strings.Contains(out, task.TaskDir().Dir) || string(res.Stderr) != "oops\n" {
		t.Fatalf("exec: exit %d, stdout %q, stderr %q; want 3, the env and %s, oops", res.ExitResult.ExitCode, out, res.Stderr, task.TaskDir().Dir)
	}

	var stdout, stderr bufCloser
	opts := &drivers.ExecOptions{Command: []string{"cat"}, Stdin: io.NopCloser(strings.NewReader("through stdin")),
		Stdout: &stdout, Stderr: &stderr}
	exit, err := d.ExecTaskStreaming(context.Background(), task.ID, opts)
	if err != nil || exit.ExitCode != 0 || stdout.String() != "through stdin" {
		t.Fatalf("streaming exec: %+v, %v, stdout %q", exit, err, stdout.String())
	}
	opts.Tty = true
	if _, err := d.ExecTaskStreaming(context.Background(), task.ID, opts); err == nil || !strings.Contains(err.Error(), "-t=false") {
		t.Fatalf("exec with a terminal: %v; want a refusal naming -t=false", err)
	}
	if _, err := d.ExecTaskStreaming(context.Background(), "no-such-task", &drivers.ExecOptions{Command: []string{"true"}}); err == nil {
		t.Fatal("exec in an unknown task succeeded")
	}
}
