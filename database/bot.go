package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"xmppbridge/mapping"
)

const (
	getManagementRoomQuery = `SELECT mxid FROM management_room WHERE room_id=$1`
	putManagementRoomQuery = `INSERT INTO management_room (room_id, mxid) VALUES ($1, $2) ON CONFLICT (room_id) DO UPDATE SET mxid=excluded.mxid`
	getUserSettingsQuery   = `SELECT mxid, receipts, typing, receipts_on_since FROM user_setting`
	putUserSettingQuery    = `
		INSERT INTO user_setting (mxid, receipts, typing, receipts_on_since) VALUES ($1, $2, $3, $4)
		ON CONFLICT (mxid) DO UPDATE SET receipts=excluded.receipts, typing=excluded.typing, receipts_on_since=excluded.receipts_on_since`
)

// ManagementRoom implements mapping.Store.
func (db *Database) ManagementRoom(ctx context.Context, room id.RoomID) (id.UserID, error) {
	var mxid id.UserID
	err := db.db.QueryRow(ctx, getManagementRoomQuery, room).Scan(&mxid)
	if errors.Is(err, sql.ErrNoRows) {
		return "", mapping.ErrNotFound
	} else if err != nil {
		return "", fmt.Errorf("look up management room %s: %w", room, err)
	}
	return mxid, nil
}

// PutManagementRoom implements mapping.Store.
func (db *Database) PutManagementRoom(ctx context.Context, room id.RoomID, mxid id.UserID) error {
	defer db.writing()()
	if _, err := db.db.Exec(ctx, putManagementRoomQuery, room, mxid); err != nil {
		return fmt.Errorf("store management room %s of %s: %w", room, mxid, err)
	}
	return nil
}

// UserSettings implements mapping.Store.
func (db *Database) UserSettings(ctx context.Context) (map[id.UserID]mapping.UserSetting, error) {
	rows, err := db.db.Query(ctx, getUserSettingsQuery)
	if err != nil {
		return nil, fmt.Errorf("read user settings: %w", err)
	}
	defer rows.Close()
	out := map[id.UserID]mapping.UserSetting{}
	for rows.Next() {
		var s mapping.UserSetting
		var receipts, typing sql.NullBool
		var onSince int64
		if err := rows.Scan(&s.MXID, &receipts, &typing, &onSince); err != nil {
			return nil, fmt.Errorf("read user settings: %w", err)
		}
		if receipts.Valid {
			s.Receipts = &receipts.Bool
		}
		if typing.Valid {
			s.Typing = &typing.Bool
		}
		s.ReceiptsOnSince = fromMilli(onSince)
		out[s.MXID] = s
	}
	return out, rows.Err()
}

// SetUserSetting implements mapping.Store.
func (db *Database) SetUserSetting(ctx context.Context, s mapping.UserSetting) error {
	defer db.writing()()
	if _, err := db.db.Exec(ctx, putUserSettingQuery, s.MXID, s.Receipts, s.Typing, toMilli(s.ReceiptsOnSince)); err != nil {
		return fmt.Errorf("store the settings of %s: %w", s.MXID, err)
	}
	return nil
}
