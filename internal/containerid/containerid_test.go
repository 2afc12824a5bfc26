package containerid

import "testing"

func TestNomad(t *testing.T) {
	for _, c := range []struct{ alloc, task, want string }{
		{"8daf9dca-6c90-1b08-1575-784bb58e943d", "proxy", "c-8daf9dca6c90-proxy"},
		{"abc", "a task/x", "c-abc-a_task_x"},
	} {
		if got := Nomad(c.alloc, c.task); got != c.want {
			t.Errorf("Nomad(%q, %q) = %q, want %q", c.alloc, c.task, got, c.want)
		}
	}
}
