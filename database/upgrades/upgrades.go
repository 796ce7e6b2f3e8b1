// Package upgrades holds the versioned schema of the bridge's database.
package upgrades

import (
	"embed"

	"go.mau.fi/util/dbutil"
)

// Table is the upgrade path from an empty database to the current schema.
var Table dbutil.UpgradeTable

//go:embed *.sql
var rawUpgrades embed.FS

func init() {
	Table.RegisterFS(rawUpgrades)
}
