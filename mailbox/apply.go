package mailbox

import "errors"

// Apply applies the command of raft log entry index. An index at or below
// Applied() is skipped and returns a zero Result. A refusal is in Result.Err;
// an error means storage failed and the node must stop applying.
func (s *Store) Apply(index uint64, cmd *Command) (Result, []Event, error) {
	return Result{}, nil, errors.New("TODO")
}
