package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/rs/zerolog"

	"xmppbridge/config"
	"xmppbridge/database"
)

// copyFlags ask for a copy of the bridge's database into another engine
// (or another file) instead of running the bridge: an operator who
// outgrows SQLite moves to PostgreSQL with it, and back.
type copyFlags struct {
	to, from *string
	replace  *bool
}

func addCopyFlags() copyFlags {
	return copyFlags{
		to: flag.String("copy-db-to", "",
			"copy the database the config names into `DATABASE` (a postgres:// URI or a SQLite file), then exit. "+
				"Stop the bridge first: what it writes during the copy is lost. Then point appservice.database at DATABASE"),
		from: flag.String("copy-db-from", "",
			"copy `DATABASE` (a postgres:// URI or a SQLite file) into the database the config names, then exit; "+
				"for a config already switched to a new database. Stop the bridge first"),
		replace: flag.Bool("copy-db-replace", false,
			"with -copy-db-to or -copy-db-from: delete what the target database holds instead of refusing to copy"),
	}
}

func (f copyFlags) requested() bool { return *f.to != "" || *f.from != "" }

// run copies between the config's database and the one named on the
// command line, and tells the operator what to do next.
func (f copyFlags) run(configPath string) error {
	if *f.to != "" && *f.from != "" {
		return errors.New("give -copy-db-to or -copy-db-from, not both")
	}
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	configured := database.Place{Type: cfg.AppService.Database.Type, URI: cfg.DatabaseURI()}
	if configured.Type != "postgres" {
		// Absolute, as the other one is, so that a copy onto itself is
		// seen below.
		if configured, err = database.PlaceOf(configured.URI); err != nil {
			return err
		}
	}
	arg, toConfigured := *f.to, false
	if arg == "" {
		arg, toConfigured = *f.from, true
	}
	other, err := database.PlaceOf(arg)
	if err != nil {
		return err
	}
	from, to := configured, other
	if toConfigured {
		from, to = other, configured
	}
	if from == to {
		return fmt.Errorf("the source and the target are the same database (%s)", from)
	}
	log := newLogger(cfg).Level(zerolog.InfoLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info().Stringer("from", from).Stringer("to", to).Msg("Copying the database; the bridge must not be running on it")
	counts, err := database.Copy(ctx, from, to, *f.replace, log)
	if errors.Is(err, database.ErrTargetNotEmpty) {
		return fmt.Errorf("%w (add -copy-db-replace to delete it)", err)
	} else if err != nil {
		return err
	}
	var total int64
	tables := make([]string, 0, len(counts))
	for table, n := range counts {
		total += n
		tables = append(tables, table)
	}
	sort.Strings(tables)
	fmt.Fprintf(os.Stdout, "Copied %d rows from %s to %s:\n", total, from, to)
	for _, table := range tables {
		fmt.Fprintf(os.Stdout, "  %-17s %d\n", table, counts[table])
	}
	if toConfigured {
		fmt.Fprintf(os.Stdout, "%s names the copy already: start the bridge.\n", configPath)
	} else {
		fmt.Fprintf(os.Stdout, "Now set appservice.database in %s to type: %s and uri: the target above, then start the bridge.\n", configPath, to.Type)
	}
	return nil
}

// warnIfEmpty says, once at start, that a database without portals or
// messages starts the bridge from nothing: expected the first time, and
// otherwise the sign of a config pointed at a new database, after which
// the old portals would be forgotten and new ones opened.
func warnIfEmpty(ctx context.Context, db *database.Database, configPath string, log zerolog.Logger) {
	empty, err := db.Empty(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("Could not tell whether the database is empty")
		return
	}
	if empty {
		log.Warn().Str("copy_with", fmt.Sprintf("bridge -c %s -copy-db-from OLD_DATABASE", configPath)).
			Msg("The database holds no portals and no messages: the bridge starts from nothing. " +
				"Expected on a first start; if the config was switched to a new database, stop the bridge and copy the old one in first")
	}
}
