package linearcheck

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

func op(client int, in Input, call int64, out Output, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func TestModelAcceptsSequentialHistory(t *testing.T) {
	h := []porcupine.Operation{
		op(0, Input{Kind: Incr, Key: "c"}, 0, Output{Value: "1"}, 1),
		op(1, Input{Kind: Incr, Key: "c"}, 2, Output{Value: "2"}, 3),
		op(0, Input{Kind: Append, Key: "a", Value: "x"}, 4, Output{Value: ""}, 5),
		op(1, Input{Kind: Get, Key: "a"}, 6, Output{Value: "x"}, 7),
		op(1, Input{Kind: Put, Key: "a", Value: "y"}, 8, Output{}, 9),
		op(0, Input{Kind: Get, Key: "a"}, 10, Output{Value: "y"}, 11),
	}
	if !porcupine.CheckOperations(Model, h) {
		t.Fatal("a sequential, correct history was rejected")
	}
}

func TestModelRejectsLostUpdate(t *testing.T) {
	// Two non-overlapping increments that both return 1: the second lost the first.
	h := []porcupine.Operation{
		op(0, Input{Kind: Incr, Key: "c"}, 0, Output{Value: "1"}, 1),
		op(1, Input{Kind: Incr, Key: "c"}, 2, Output{Value: "1"}, 3),
	}
	if porcupine.CheckOperations(Model, h) {
		t.Fatal("a lost update was accepted")
	}
}

func TestModelRejectsStaleRead(t *testing.T) {
	h := []porcupine.Operation{
		op(0, Input{Kind: Put, Key: "k", Value: "new"}, 0, Output{}, 1),
		op(1, Input{Kind: Get, Key: "k"}, 2, Output{Value: ""}, 3),
	}
	if porcupine.CheckOperations(Model, h) {
		t.Fatal("a stale read after a completed write was accepted")
	}
}

func TestModelUnknownOutcome(t *testing.T) {
	var hist History
	hist.Add(0, Input{Kind: Incr, Key: "c"}, 0, Output{Unknown: true}, 5)
	hist.Add(1, Input{Kind: Incr, Key: "c"}, 10, Output{Value: "2"}, 11)
	if !porcupine.CheckOperations(Model, hist.ops) {
		t.Fatal("an unknown increment that took effect was not allowed to")
	}
	hist = History{}
	hist.Add(0, Input{Kind: Incr, Key: "c"}, 0, Output{Unknown: true}, 5)
	hist.Add(1, Input{Kind: Incr, Key: "c"}, 10, Output{Value: "1"}, 11)
	if !porcupine.CheckOperations(Model, hist.ops) {
		t.Fatal("an unknown increment that took effect later was not allowed to")
	}
}
