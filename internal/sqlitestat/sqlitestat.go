// Package sqlitestat counts the work SQLite does for one statement: the
// virtual machine's steps (SQLITE_STMTSTATUS_VM_STEP), which grow with the
// rows a statement visits, and the steps of full scans. Tests use it to
// catch a lookup whose cost grows with a table's size, by count rather than
// by time (these machines are shared and noisy).
//
// It calls the SQLite that github.com/mattn/go-sqlite3 compiles into the
// binary, on a connection of its own, so that the count is the statement's
// alone; database/sql hides the statement handle that would carry it.
package sqlitestat

/*
#include <stdlib.h>
#include <stdint.h>

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
typedef int64_t sqlite3_int64;
extern int sqlite3_open_v2(const char *filename, sqlite3 **ppDb, int flags, const char *zVfs);
extern int sqlite3_close_v2(sqlite3 *);
extern int sqlite3_prepare_v2(sqlite3 *db, const char *zSql, int nByte, sqlite3_stmt **ppStmt, const char **pzTail);
extern int sqlite3_bind_int64(sqlite3_stmt *, int, sqlite3_int64);
extern int sqlite3_bind_text(sqlite3_stmt *, int, const char *, int, void (*)(void *));
extern int sqlite3_step(sqlite3_stmt *);
extern int sqlite3_finalize(sqlite3_stmt *);
extern int sqlite3_reset(sqlite3_stmt *);
extern int sqlite3_clear_bindings(sqlite3_stmt *);
extern int sqlite3_stmt_status(sqlite3_stmt *, int op, int resetFlg);
extern const char *sqlite3_errmsg(sqlite3 *);
extern int sqlite3_exec(sqlite3 *, const char *sql, void *callback, void *arg, char **errmsg);
extern int sqlite3_busy_timeout(sqlite3 *, int ms);

#define XB_OPEN_READWRITE 0x00000002
#define XB_OPEN_URI 0x00000040
#define XB_ROW 100
#define XB_DONE 101
#define XB_STATUS_FULLSCAN_STEP 1
#define XB_STATUS_SORT 2
#define XB_STATUS_VM_STEP 4
#define XB_STATUS_REPREPARE 5

// SQLITE_TRANSIENT: SQLite copies the text.
static int xb_bind_text(sqlite3_stmt *s, int i, const char *p, int n) {
	return sqlite3_bind_text(s, i, p, n, (void (*)(void *))-1);
}
*/
import "C"

import (
	"fmt"
	"reflect"
	"regexp"
	"unsafe"

	_ "github.com/mattn/go-sqlite3" // the SQLite this package calls
)

// Stats is what one run of a statement cost.
type Stats struct {
	VMSteps       int // virtual machine steps: grows with the rows visited
	FullScanSteps int // steps forward in a full table scan
	Sorts         int // sorts the plan needed
	Rows          int // rows returned
	// Reprepares counts the times SQLite compiled the statement again when
	// it ran a second time, with the arguments of RunAgain (the same ones
	// if not given): it does when a bound value may change the plan (a
	// LIMIT or LIKE parameter, a parameter past the 32nd, an integer that
	// becomes or stops being 0 or 1 in an equality), and then every run
	// pays for a compile, tens of µs, as if no statement were cached.
	Reprepares int
}

// dollar is a placeholder as the bridge writes them, $1 and on. SQLite
// reads "$1" as a name and numbers names in order of first appearance;
// "?1" is numbered by its digits.
var dollar = regexp.MustCompile(`\$([0-9]+)`)

// Run opens path, runs query with args (int, int64, bool, or strings) to
// completion inside a transaction that it rolls back, so that a write
// changes nothing, and reports what it cost. Placeholders are $1, $2, …
func Run(path, query string, args ...any) (Stats, error) {
	return RunAgain(path, query, args, args)
}

// RunAgain is Run with args, then once more with again (Stats.Reprepares).
func RunAgain(path, query string, args, again []any) (Stats, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var db *C.sqlite3
	if rc := C.sqlite3_open_v2(cpath, &db, C.XB_OPEN_READWRITE|C.XB_OPEN_URI, nil); rc != 0 {
		C.sqlite3_close_v2(db)
		return Stats{}, fmt.Errorf("open %s: sqlite error %d", path, rc)
	}
	defer C.sqlite3_close_v2(db)
	// The store's own connections (its checkpointer) may hold a lock for
	// a moment: wait as they do, instead of failing at once.
	C.sqlite3_busy_timeout(db, 5000)
	if err := exec(db, "BEGIN"); err != nil {
		return Stats{}, err
	}
	defer exec(db, "ROLLBACK")
	cquery := C.CString(dollar.ReplaceAllString(query, "?$1"))
	defer C.free(unsafe.Pointer(cquery))
	var stmt *C.sqlite3_stmt
	if rc := C.sqlite3_prepare_v2(db, cquery, -1, &stmt, nil); rc != 0 {
		return Stats{}, fmt.Errorf("prepare %q: %s", query, C.GoString(C.sqlite3_errmsg(db)))
	}
	defer C.sqlite3_finalize(stmt)
	var st Stats
	// Twice, binding the same arguments again, to see whether binding
	// makes SQLite compile the statement anew (Reprepares).
	for run := range 2 {
		if run > 0 {
			// As go-sqlite3 does when it puts a statement back in its
			// cache; clearing the bindings of a statement whose plan
			// may depend on one expires it.
			C.sqlite3_reset(stmt)
			C.sqlite3_clear_bindings(stmt)
		}
		if err := bind(db, stmt, map[bool][]any{false: args, true: again}[run > 0]); err != nil {
			return Stats{}, err
		}
		st.Rows = 0
		for {
			rc := C.sqlite3_step(stmt)
			if rc == C.XB_DONE {
				break
			} else if rc != C.XB_ROW {
				return Stats{}, fmt.Errorf("run %q: %s", query, C.GoString(C.sqlite3_errmsg(db)))
			}
			st.Rows++
		}
		if run == 0 {
			// The first run's work; the second would add to it.
			st.VMSteps = int(C.sqlite3_stmt_status(stmt, C.XB_STATUS_VM_STEP, 1))
			st.FullScanSteps = int(C.sqlite3_stmt_status(stmt, C.XB_STATUS_FULLSCAN_STEP, 1))
			st.Sorts = int(C.sqlite3_stmt_status(stmt, C.XB_STATUS_SORT, 1))
		}
	}
	st.Reprepares = int(C.sqlite3_stmt_status(stmt, C.XB_STATUS_REPREPARE, 0))
	return st, nil
}

func bind(db *C.sqlite3, stmt *C.sqlite3_stmt, args []any) error {
	for i, a := range args {
		n := C.int(i + 1)
		if v := reflect.ValueOf(a); v.Kind() == reflect.String {
			a = v.String() // named string types: ids, directions
		}
		var rc C.int
		switch v := a.(type) {
		case int:
			rc = C.sqlite3_bind_int64(stmt, n, C.sqlite3_int64(v))
		case int64:
			rc = C.sqlite3_bind_int64(stmt, n, C.sqlite3_int64(v))
		case bool:
			b := 0
			if v {
				b = 1
			}
			rc = C.sqlite3_bind_int64(stmt, n, C.sqlite3_int64(b))
		case string:
			cs := C.CString(v)
			rc = C.xb_bind_text(stmt, n, cs, C.int(len(v)))
			C.free(unsafe.Pointer(cs))
		default:
			return fmt.Errorf("argument %d: type %T not supported", i+1, a)
		}
		if rc != 0 {
			return fmt.Errorf("bind argument %d: %s", i+1, C.GoString(C.sqlite3_errmsg(db)))
		}
	}
	return nil
}

func exec(db *C.sqlite3, sql string) error {
	c := C.CString(sql)
	defer C.free(unsafe.Pointer(c))
	if rc := C.sqlite3_exec(db, c, nil, nil, nil); rc != 0 {
		return fmt.Errorf("%s: %s", sql, C.GoString(C.sqlite3_errmsg(db)))
	}
	return nil
}
