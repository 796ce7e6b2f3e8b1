package database

import (
	"errors"
	"strings"

	"github.com/lib/pq"
	"github.com/mattn/go-sqlite3"
)

// storedValueError is a value read back from the store that cannot be
// decoded (a stored JID that no longer parses): reading it again gives the
// same answer.
type storedValueError struct{ err error }

func (e *storedValueError) Error() string { return e.err.Error() }
func (e *storedValueError) Unwrap() error { return e.err }

// Refuses tells whether err is the store refusing the data it was given or
// holds, so that no retry can help: a constraint, a value the engine cannot
// keep (PostgreSQL's NUL in text, an index entry over its size), a stored
// value that cannot be read. Anything else, the store itself failing
// (connection, full disk, I/O, a lock, a serialization failure, a shutdown)
// or an error this does not know, is false: those are retried, and a retry
// loses nothing, where setting an item aside would.
func (db *Database) Refuses(err error) bool {
	return refuses(err)
}

func refuses(err error) bool {
	if err == nil {
		return false
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch pe.Code.Class() {
		case "22", // data exception: NUL in text (22021), a value out of range, bad input syntax
			"23", // integrity constraint violation: unique, foreign key, check, not null
			"54": // program limit exceeded: an index row over its size (54000)
			return true
		}
		return false
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrConstraint, sqlite3.ErrMismatch, sqlite3.ErrTooBig:
			return true
		}
		return false
	}
	var sv *storedValueError
	if errors.As(err, &sv) || errors.Is(err, errOtherPortal) {
		return true
	}
	// database/sql reports a stored value it cannot convert into the
	// destination only as text (convertAssign's "sql: Scan error on column
	// index …"), with no type to match.
	return strings.Contains(err.Error(), "sql: Scan error on column")
}
