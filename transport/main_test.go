package transport_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind: every
// node, store and server a test starts is stopped in its t.Cleanup.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
