package database

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.mau.fi/util/dbutil"

	"xmppbridge/mapping"
)

const (
	insertJobsQuery = `INSERT INTO outbox (kind, message_id, payload, attempts, not_before, last_error, lane, created_at) VALUES `
	// What the operator watches (OwedSends): the owed sends by kind, and
	// when the oldest of each was stored.
	owedSendsQuery  = `SELECT kind, COUNT(*), MIN(created_at) FROM outbox GROUP BY kind`
	getDueJobsQuery = `
		SELECT id, kind, message_id, payload, attempts, not_before, last_error, lane
		FROM outbox WHERE not_before<=$1 AND id>$2 ORDER BY id LIMIT $3
	`
	deleteJobQuery = `DELETE FROM outbox WHERE id=$1`
	retryJobQuery  = `UPDATE outbox SET attempts=attempts+1, not_before=$2, last_error=$3 WHERE id=$1`
)

func scanJob(row dbutil.Scannable) (*mapping.Job, error) {
	var j mapping.Job
	var messageID sql.NullInt64
	var notBefore int64
	err := row.Scan(&j.ID, &j.Kind, &messageID, &j.Payload, &j.Attempts, &notBefore, &j.LastError, &j.Lane)
	if err != nil {
		return nil, err
	}
	j.MessageID = messageID.Int64
	j.NotBefore = fromMilli(notBefore)
	return &j, nil
}

// insertJobs stores jobs, a few hundred a statement, and returns their
// ids, leaving the jobs untouched so that a rolled-back transaction leaves
// no trace in them. A non-zero messageID overrides the jobs' own.
func (db *Database) insertJobs(ctx context.Context, messageID int64, jobs []*mapping.Job) ([]int64, error) {
	ids := make([]int64, 0, len(jobs))
	var b strings.Builder
	for len(jobs) > 0 {
		n := min(len(jobs), 200)
		b.Reset()
		b.WriteString(insertJobsQuery)
		args := make([]any, 0, 8*n)
		now := toMilli(time.Now())
		for i, job := range jobs[:n] {
			msgID := job.MessageID
			if messageID != 0 {
				msgID = messageID
			}
			if i > 0 {
				b.WriteByte(',')
			}
			p := len(args)
			fmt.Fprintf(&b, "($%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d)", p+1, p+2, p+3, p+4, p+5, p+6, p+7, p+8)
			args = append(args, job.Kind, dbutil.NumPtr(msgID), job.Payload, job.Attempts, toMilli(job.NotBefore), job.LastError, job.Lane, now)
		}
		got, err := queryMany(ctx, db.db, dbutil.ScanSingleColumn[int64], b.String()+" RETURNING id", args...)
		if err != nil {
			return nil, fmt.Errorf("store %d jobs (%s first): %w", n, jobs[0].Kind, err)
		} else if len(got) != n {
			return nil, fmt.Errorf("store %d jobs: %d ids came back", n, len(got))
		}
		// The ids of one statement rise in the order of its rows (SQLite's
		// AUTOINCREMENT, PostgreSQL's sequence), whatever order RETURNING
		// lists them in.
		slices.Sort(got)
		ids = append(ids, got...)
		jobs = jobs[n:]
	}
	return ids, nil
}

// AddJobs stores jobs, all or none, and sets their IDs. A zero NotBefore
// makes a job due at once.
func (db *Database) AddJobs(ctx context.Context, jobs ...*mapping.Job) error {
	defer db.writing()()
	var ids []int64
	err := db.db.DoTxn(ctx, nil, func(ctx context.Context) (err error) {
		ids, err = db.insertJobs(ctx, 0, jobs)
		return err
	})
	if err != nil {
		return fmt.Errorf("store %d jobs: %w", len(jobs), err)
	}
	for i, job := range jobs {
		job.ID = ids[i]
	}
	return nil
}

// DueJobs returns up to limit jobs whose NotBefore is not after now, oldest
// first.
func (db *Database) DueJobs(ctx context.Context, now time.Time, limit int) ([]*mapping.Job, error) {
	return db.DueJobsAfter(ctx, now, 0, limit)
}

// DueJobsAfter is DueJobs for the jobs with an ID above after: the
// outbox reads a long queue a batch at a time.
func (db *Database) DueJobsAfter(ctx context.Context, now time.Time, after int64, limit int) ([]*mapping.Job, error) {
	if limit <= 0 {
		// SQLite reads a negative LIMIT as none, PostgreSQL rejects it.
		return nil, fmt.Errorf("get due jobs: limit %d is not positive", limit)
	}
	jobs, err := queryMany(ctx, db.db, scanJob, getDueJobsQuery, now.UnixMilli(), after, limit)
	if err != nil {
		return nil, fmt.Errorf("get due jobs: %w", err)
	}
	return jobs, nil
}

// DeleteJob removes a job that is done. A job that is already gone is not
// an error: it is done either way.
func (db *Database) DeleteJob(ctx context.Context, jobID int64) error {
	defer db.writing()()
	if _, err := db.db.Exec(ctx, deleteJobQuery, jobID); err != nil {
		return fmt.Errorf("delete job %d: %w", jobID, err)
	}
	return nil
}

// RetryJob records a failed attempt and postpones the job to notBefore.
func (db *Database) RetryJob(ctx context.Context, jobID int64, notBefore time.Time, lastErr string) error {
	defer db.writing()()
	if err := execOne(ctx, db.db, retryJobQuery, jobID, toMilli(notBefore), lastErr); err != nil {
		return fmt.Errorf("postpone job %d: %w", jobID, err)
	}
	return nil
}

// DeleteJobs removes finished jobs, in one statement per few hundred.
func (db *Database) DeleteJobs(ctx context.Context, jobIDs ...int64) error {
	defer db.writing()()
	for len(jobIDs) > 0 {
		n := min(len(jobIDs), 500)
		query, args := inList("DELETE FROM outbox WHERE id IN (", jobIDs[:n])
		if _, err := db.db.Exec(ctx, query+")", args...); err != nil {
			return fmt.Errorf("delete %d jobs: %w", n, err)
		}
		jobIDs = jobIDs[n:]
	}
	return nil
}

// Owed is what one side is owed: how many sends, and since when the
// oldest of them waits (zero if none, or stored before v7 recorded it).
type Owed struct {
	Count  int
	Oldest time.Time
}

// OwedSends counts the sends the outbox owes each side.
func (db *Database) OwedSends(ctx context.Context) (map[string]Owed, error) {
	rows, err := db.db.Query(ctx, owedSendsQuery)
	if err != nil {
		return nil, fmt.Errorf("count owed sends: %w", err)
	}
	defer rows.Close()
	out := map[string]Owed{}
	for rows.Next() {
		var kind string
		var n int
		var oldest int64
		if err := rows.Scan(&kind, &n, &oldest); err != nil {
			return nil, fmt.Errorf("count owed sends: %w", err)
		}
		side := mapping.JobKind(kind).Side()
		o := out[side]
		o.Count += n
		if t := fromMilli(oldest); oldest > 0 && (o.Oldest.IsZero() || t.Before(o.Oldest)) {
			o.Oldest = t
		}
		out[side] = o
	}
	return out, rows.Err()
}

// Ping tells whether the database answers.
func (db *Database) Ping(ctx context.Context) error { return db.db.RawDB.PingContext(ctx) }

// WALBytes is the size of the SQLite write-ahead log, -1 if there is none
// (PostgreSQL) or it cannot be read.
func (db *Database) WALBytes() int64 {
	if db.walPath == "" {
		return -1
	}
	st, err := os.Stat(db.walPath)
	if err != nil {
		return -1
	}
	return st.Size()
}
