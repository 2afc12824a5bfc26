package controlplane

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xfaas/xfaas/proxy"
)

// checkpointIndex reads the durable tier (the object store the containers
// write checkpoints to) for what the API shows and cleans up: the
// checkpointed sessions of a function, and a deleted function's
// checkpoints and logs.
type checkpointIndex struct {
	js      jetstream.JetStream
	durable *proxy.CheckpointStore
}

// sessions returns the checkpointed sessions of fn.
func (ci *checkpointIndex) sessions(ctx context.Context, fn string) ([]SessionInfo, error) {
	obj, err := ci.durable.Open(ctx)
	if err != nil {
		return nil, err
	}
	infos, err := obj.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []SessionInfo
	for _, info := range infos {
		session, ok := strings.CutPrefix(info.Name, fn+"/")
		if !ok || info.Deleted {
			continue
		}
		si := SessionInfo{ID: session, Status: "checkpointed", Secondaries: []ContainerInfo{}, LastActive: info.ModTime.UTC()}
		si.StateKeys, _ = strconv.ParseInt(info.Metadata["keys"], 10, 64)
		si.StateBytes, _ = strconv.ParseInt(info.Metadata["bytes"], 10, 64)
		out = append(out, si)
	}
	return out, nil
}

// remove deletes the checkpoints and session logs of a deleted function,
// so that a function created later under its name starts empty.
func (ci *checkpointIndex) remove(ctx context.Context, fn string) error {
	obj, err := ci.durable.Open(ctx)
	if err != nil {
		return err
	}
	infos, err := obj.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return err
	}
	var errs []error
	for _, info := range infos {
		if strings.HasPrefix(info.Name, fn+"/") && !info.Deleted {
			errs = append(errs, obj.Delete(ctx, info.Name))
		}
	}
	stream, err := ci.js.Stream(ctx, proxy.LogStream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		errs = append(errs, err)
	default:
		errs = append(errs, stream.Purge(ctx, jetstream.WithPurgeSubject(proxy.LogSubject(fn, ">", ""))))
	}
	return errors.Join(errs...)
}

// withTimeout bounds a durable-tier call made on behalf of an API request.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 10*time.Second)
}
