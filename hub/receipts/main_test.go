package receipts_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind: a halted
// run, a closed dispatcher and its idle connections must all be gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
