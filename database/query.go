package database

import (
	"context"
	"database/sql"
	"errors"

	"go.mau.fi/util/dbutil"

	"xmppbridge/mapping"
)

// queryOne runs a query for at most one row and scans it, reporting a
// missing row as mapping.ErrNotFound, which is what Store callers branch on.
func queryOne[T any](ctx context.Context, db *dbutil.Database, scan dbutil.ConvertRowFn[T], query string, args ...any) (T, error) {
	val, err := scan(db.QueryRow(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		err = mapping.ErrNotFound
	}
	return val, err
}

// queryMany runs a query and scans every row.
func queryMany[T any](ctx context.Context, db *dbutil.Database, scan dbutil.ConvertRowFn[T], query string, args ...any) ([]T, error) {
	return scan.NewRowIter(db.Query(ctx, query, args...)).AsList()
}

// execOne runs a statement meant to change exactly one row, reporting a
// missing row as mapping.ErrNotFound.
func execOne(ctx context.Context, db *dbutil.Database, query string, args ...any) error {
	res, err := db.Exec(ctx, query, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return mapping.ErrNotFound
	}
	return nil
}

// inBatch is how many keys one "IN (…)" query takes.
const inBatch = 500

// queryIn runs prefix followed by "$1,$2,…)" over keys, inBatch at a time,
// and maps the rows found by keyOf; keys with no row are missing.
func queryIn[K comparable, T any](ctx context.Context, db *dbutil.Database, scan dbutil.ConvertRowFn[T], prefix string, keys []K, keyOf func(T) K) (map[K]T, error) {
	out := make(map[K]T, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), inBatch)
		query, args := inList(prefix, keys[:n])
		rows, err := queryMany(ctx, db, scan, query+")", args...)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			out[keyOf(r)] = r
		}
		keys = keys[n:]
	}
	return out, nil
}
