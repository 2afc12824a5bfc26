// Package fnconfig is a function's configuration: the JSON keys of DESIGN.md
// ("Function config keys"), their defaults in one place, their validation in
// one place. The control plane validates a config at deploy time; session
// containers receive the validated config when they are bound.
package fnconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid function config")

// Config is a function's configuration.
type Config struct {
	// MaxWorkers is the number of wasm workers per container. The default is 10.
	MaxWorkers int `json:"max_workers"`
	// MaxContainers is the number of containers per session namespace
	// (primary plus secondaries). The default is 8.
	MaxContainers int `json:"max_containers"`
	// WorkerCPUMillicores is each worker's CPU quota. The default is 100.
	WorkerCPUMillicores int `json:"worker_cpu_millicores"`
	// WorkerMemoryMB is each worker's wasm memory limit. The default is 128.
	WorkerMemoryMB int `json:"worker_memory_mb"`
	// TimeoutMS bounds one invocation. The default is 30000.
	TimeoutMS int `json:"timeout_ms"`
	// KeepAliveS is how long an idle session namespace lives before it is
	// checkpointed and released. The default is 300.
	KeepAliveS int `json:"keep_alive_s"`
	// Lock isolates linearizable sections: "pessimistic" (the default) or
	// "optimistic".
	Lock string `json:"lock"`
	// Durability is "checkpoint" (the default: a crash loses writes since the
	// last checkpoint) or "log" (every committed write is logged before the
	// response returns).
	Durability string `json:"durability"`
	// Hook optionally names a deployed function that computes the session
	// label from the request inside the control plane.
	Hook string `json:"hook,omitempty"`
	// DependsOn names the functions whose sessions this function may read
	// with pull_state (at most MaxDependsOn, no duplicates). The default is
	// none: every pull is refused.
	DependsOn []string `json:"depends_on,omitempty"`
}

// MaxDependsOn bounds the depends_on list.
const MaxDependsOn = 16

// ValidFunctionName reports whether name is a function name:
// [a-z0-9][a-z0-9_-]{0,62}. Names appear in NATS subjects, Consul meta and
// bucket keys, so nothing else is allowed.
func ValidFunctionName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Default returns the configuration used for absent keys.
func Default() Config {
	return Config{
		MaxWorkers:          10,
		MaxContainers:       8,
		WorkerCPUMillicores: 100,
		WorkerMemoryMB:      128,
		TimeoutMS:           30000,
		KeepAliveS:          300,
		Lock:                "pessimistic",
		Durability:          "checkpoint",
	}
}

// Parse decodes a JSON config strictly (unknown keys are errors), fills the
// defaults of absent keys and validates the result. Empty input is the
// default config.
func Parse(data []byte) (Config, error) {
	c := Default()
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalid)
	}
	return c, c.Validate()
}

// Validate checks every field's range.
func (c Config) Validate() error {
	checks := []struct {
		name     string
		val, min int
		max      int
	}{
		{"max_workers", c.MaxWorkers, 1, 1000},
		{"max_containers", c.MaxContainers, 1, 1000},
		{"worker_cpu_millicores", c.WorkerCPUMillicores, 1, 64000},
		{"worker_memory_mb", c.WorkerMemoryMB, 1, 4096},
		{"timeout_ms", c.TimeoutMS, 1, 15 * 60 * 1000},
		{"keep_alive_s", c.KeepAliveS, 1, 7 * 24 * 3600},
	}
	for _, k := range checks {
		if k.val < k.min || k.val > k.max {
			return fmt.Errorf("%w: %s must be between %d and %d, not %d", ErrInvalid, k.name, k.min, k.max, k.val)
		}
	}
	if c.Lock != "pessimistic" && c.Lock != "optimistic" {
		return fmt.Errorf("%w: lock must be \"pessimistic\" or \"optimistic\", not %q", ErrInvalid, c.Lock)
	}
	if c.Durability != "checkpoint" && c.Durability != "log" {
		return fmt.Errorf("%w: durability must be \"checkpoint\" or \"log\", not %q", ErrInvalid, c.Durability)
	}
	return c.validateDependsOn()
}

func (c Config) validateDependsOn() error {
	if len(c.DependsOn) > MaxDependsOn {
		return fmt.Errorf("%w: depends_on lists %d functions, at most %d are allowed", ErrInvalid, len(c.DependsOn), MaxDependsOn)
	}
	for i, name := range c.DependsOn {
		if !ValidFunctionName(name) {
			return fmt.Errorf("%w: depends_on: %q is not a function name", ErrInvalid, name)
		}
		if slices.Contains(c.DependsOn[:i], name) {
			return fmt.Errorf("%w: depends_on lists %q twice", ErrInvalid, name)
		}
	}
	return nil
}

// Timeout is TimeoutMS as a duration.
func (c Config) Timeout() time.Duration { return time.Duration(c.TimeoutMS) * time.Millisecond }

// KeepAlive is KeepAliveS as a duration.
func (c Config) KeepAlive() time.Duration { return time.Duration(c.KeepAliveS) * time.Second }

// WorkerMemoryBytes is WorkerMemoryMB in bytes.
func (c Config) WorkerMemoryBytes() int64 { return int64(c.WorkerMemoryMB) << 20 }
