package database

import (
	"context"
	"fmt"

	"go.mau.fi/util/dbutil"
)

const (
	getKVQuery = `SELECT value FROM kv WHERE key=$1`
	setKVQuery = `
		INSERT INTO kv (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value=excluded.value
	`
)

// GetKV returns the value stored under key, or mapping.ErrNotFound.
func (db *Database) GetKV(ctx context.Context, key string) (string, error) {
	value, err := queryOne(ctx, db.db, dbutil.ScanSingleColumn[string], getKVQuery, key)
	if err != nil {
		return "", fmt.Errorf("get %s: %w", key, err)
	}
	return value, nil
}

// SetKV stores value under key, replacing what was there.
func (db *Database) SetKV(ctx context.Context, key, value string) error {
	defer db.writing()()
	if _, err := db.db.Exec(ctx, setKVQuery, key, value); err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	return nil
}
