package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/notifyhub/hub/mailbox"
)

// TestWireErrorsCoverMailbox: every exported error variable of mailbox made
// with errors.New has a row in wireErrors (matched by its text), or a
// refusal forwarded from a follower would reach its client as an internal
// error.
func TestWireErrorsCoverMailbox(t *testing.T) {
	files, err := filepath.Glob("../mailbox/*.go")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, e := range wireErrors {
		known[e.Error()] = true
	}
	fset := token.NewFileSet()
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if !name.IsExported() || !strings.HasPrefix(name.Name, "Err") || i >= len(vs.Values) {
					continue
				}
				call, ok := vs.Values[i].(*ast.CallExpr)
				if !ok || len(call.Args) != 1 {
					continue
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok {
					continue
				}
				msg, err := strconv.Unquote(lit.Value)
				if err != nil {
					continue
				}
				found++
				if !known[msg] {
					t.Errorf("mailbox.%s (%q) has no row in wireErrors (cluster/wire.go)", name.Name, msg)
				}
			}
			return true
		})
	}
	if found < 10 {
		t.Fatalf("found only %d mailbox errors: the scan is broken", found)
	}
}

func TestWireResultRoundTrip(t *testing.T) {
	st := &mailbox.MessageStatus{ID: "m", Seq: 3, State: mailbox.StatePending}
	in := mailbox.Result{
		Err:     fmt.Errorf("mailbox: create: %w", mailbox.ErrUserExists),
		User:    &mailbox.User{ID: "u", LastSeq: 2},
		Mailbox: &mailbox.Mailbox{ID: "b"},
		Device:  &mailbox.Device{ID: "d", Cursor: 1},
		Ticket:  &mailbox.Ticket{UserID: "u"},
		Published: []mailbox.PublishedItem{
			{Status: st, Duplicate: true},
			{Err: fmt.Errorf("x: %w", mailbox.ErrTokenRevoked)},
		},
		Expired: 4,
		More:    true,
		Refused: []error{nil, mailbox.ErrDeviceUnknown},
		Issued:  7,
	}
	// Every field of Result is set above: a new field must be added to the
	// test, and to the codec if it holds an error.
	v := reflect.ValueOf(in)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("field %s of mailbox.Result is not covered", v.Type().Field(i).Name)
		}
	}
	w := resultToWire(&in)
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	var back wireResult
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	out := back.result()
	if !errors.Is(out.Err, mailbox.ErrUserExists) || out.Err.Error() != in.Err.Error() {
		t.Errorf("Err %v", out.Err)
	}
	if !reflect.DeepEqual(out.User, in.User) || !reflect.DeepEqual(out.Mailbox, in.Mailbox) ||
		!reflect.DeepEqual(out.Device, in.Device) || !reflect.DeepEqual(out.Ticket, in.Ticket) ||
		out.Expired != 4 || !out.More || out.Issued != 7 {
		t.Errorf("round trip: %+v", out)
	}
	if len(out.Published) != 2 || !reflect.DeepEqual(out.Published[0].Status, st) || !out.Published[0].Duplicate ||
		!errors.Is(out.Published[1].Err, mailbox.ErrTokenRevoked) {
		t.Errorf("published %+v", out.Published)
	}
	if len(out.Refused) != 2 || out.Refused[0] != nil || !errors.Is(out.Refused[1], mailbox.ErrDeviceUnknown) {
		t.Errorf("refused %+v", out.Refused)
	}
	// A context deadline under ErrNoQuorum crosses as ErrNoQuorum.
	if e := toWire(ctxWrapped()).err(); !errors.Is(e, ErrNoQuorum) {
		t.Errorf("deadline: %v", e)
	}
}

func ctxWrapped() error { return fmt.Errorf("%w: %w", ErrNoQuorum, errors.New("deadline")) }
