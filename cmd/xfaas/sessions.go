package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/controlplane/client"
)

func init() {
	commands["sessions"] = command{summary: "list the session namespaces of a function", run: runSessions}
	commands["evict"] = command{summary: "checkpoint a session now and release its containers", run: runEvict}
	commands["checkpoint"] = command{summary: "checkpoint an active session now; it keeps running", run: runCheckpoint}
}

func runSessions(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "sessions", "NAME [--json]")
	api := addAPIFlags(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON instead of a table")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, args, 1, "NAME"); err != nil {
		return err
	}
	list, err := api.client().Sessions(ctx, args[0])
	if err != nil {
		return apiError(err)
	}
	if *asJSON {
		return printJSON(env.stdout, list)
	}
	printSessions(env.stdout, list, time.Now())
	return nil
}

// printSessions prints a table of sessions; PRIMARY is container@node.
func printSessions(w io.Writer, list []controlplane.SessionInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tPRIMARY\tSECONDARIES\tWORKERS\tIN FLIGHT\tKEYS\tBYTES\tLAST ACTIVE")
	for _, s := range list {
		primary := "-"
		if p := s.Primary; p != nil {
			primary = p.Container + "@" + p.Node
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", s.ID, s.Status, primary, len(s.Secondaries),
			s.Workers, s.InFlight, s.StateKeys, byteSize(s.StateBytes), ago(s.LastActive, now))
	}
	tw.Flush()
}

// byteSize is n in B, KiB, MiB or GiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	size, prefix := float64(n)/unit, "KMGTPE"
	for size >= unit && len(prefix) > 1 {
		size, prefix = size/unit, prefix[1:]
	}
	return fmt.Sprintf("%.1f %ciB", size, prefix[0])
}

// ago is how long before now t was, to the second; "-" for never.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func runEvict(ctx context.Context, env *cli, args []string) error {
	return sessionCall(ctx, env, "evict", args, (*client.Client).Evict)
}

func runCheckpoint(ctx context.Context, env *cli, args []string) error {
	return sessionCall(ctx, env, "checkpoint", args, (*client.Client).Checkpoint)
}

func sessionCall(ctx context.Context, env *cli, name string, args []string,
	call func(*client.Client, context.Context, string, string) (controlplane.CheckpointReply, error)) error {
	fs := newFlags(env, name, "NAME SESSION_ID")
	api := addAPIFlags(fs)
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, args, 2, "NAME and SESSION_ID"); err != nil {
		return err
	}
	reply, err := call(api.client(), ctx, args[0], args[1])
	if err != nil {
		return apiError(err)
	}
	ck := reply.Checkpoint
	where := "durable tier"
	if !ck.Durable {
		where = "node only"
	}
	fmt.Fprintf(env.stdout, "%s session %s of %s: checkpoint seq %d, %d keys, %s (%s)\n",
		reply.Action, args[1], args[0], ck.Seq, ck.Keys, byteSize(ck.Bytes), where)
	return nil
}
