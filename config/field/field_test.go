package field

import (
	"errors"
	"slices"
	"testing"
)

// TestErrors: no problem joins to nil; each Add is kept, in order, and
// With names related keys on the kept error.
func TestErrors(t *testing.T) {
	t.Parallel()
	var errs Errors
	if errs.Join() != nil {
		t.Fatal("no problem, yet an error")
	}
	errs.Add("a.b", "must be > 0, got %d", 0)
	errs.Add("a.c[1]", "repeats a.c[0]").With("a.c")
	err := errs.Join()
	if err == nil || err.Error() != "a.b must be > 0, got 0\na.c[1] repeats a.c[0]" {
		t.Fatalf("joined: %v", err)
	}
	var fe *Error
	if !errors.As(errs[1], &fe) || fe.Section() != "a.c" || !slices.Equal(fe.Related, []string{"a.c"}) {
		t.Errorf("second problem: %+v", fe)
	}
}
