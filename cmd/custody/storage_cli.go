package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/storage/postgres"
)

func migrateCmd() *cobra.Command {
	var (
		dataPath string
		store    storageFlags
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the database's schema up to date",
		Long: `Apply the schema migrations the database lacks and report its version.

custody serve applies them itself when it starts; migrate lets an
operator do so beforehand (several replicas starting together migrate one
at a time in any case). A database migrated by a newer custody is refused.
The embedded bbolt database is brought up to date whenever it is opened.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if store.kind != "postgres" {
				db, err := store.open(cmd.Context(), dataPath)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "bolt: %s is up to date\n", filepath.Join(dataPath, fileDB))
				return db.Close()
			}
			if store.dsn == "" {
				return errors.New("--storage postgres needs --dsn (or CUSTODY_DSN)")
			}
			pg, err := postgres.Open(cmd.Context(), store.dsn, postgres.Options{NoMigrate: true})
			if err != nil {
				return err
			}
			defer pg.Close()
			applied, err := pg.Migrate(cmd.Context())
			if err != nil {
				return err
			}
			for _, v := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "postgres: applied migration %d\n", v)
			}
			v, err := pg.Version(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "postgres: schema at version %d of %d\n", v, postgres.LatestVersion())
			return nil
		},
	}
	store.register(cmd.Flags())
	cmd.Flags().StringVar(&dataPath, "data", envDefault("CUSTODY_DATA", "./custody-data"), "data directory (bolt)")
	return cmd
}
