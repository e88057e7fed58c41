package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/storage/dump"
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

func exportCmd() *cobra.Command {
	var (
		dataPath, out string
		store         storageFlags
	)
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the whole database to a file, to move it to another backend",
		Long: `Write every record of the database to a file (JSON Lines) that
custody import-data loads into another backend, checked by counts and a
SHA-256 printed at the end.

The embedded database can be exported only while no server uses it; a
PostgreSQL database is exported from one consistent snapshot while its
servers go on. The file holds secrets (DEP OAuth tokens, token hashes):
it is written with mode 0600. The data dir's files (the CA, the RA, the
profile-signing identity, the push certificate, mail and Android
settings) are not in the database: keep the data dir.

  custody export -o custody.export
  custody export --storage postgres --dsn postgres://... | gzip > custody.export.gz`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if store.kind == "bolt" {
				if _, err := os.Stat(filepath.Join(dataPath, fileDB)); err != nil {
					return fmt.Errorf("no database to export: %w", err)
				}
			}
			db, err := store.open(cmd.Context(), dataPath)
			if err != nil {
				return err
			}
			defer db.Close()
			w, report := cmd.OutOrStdout(), cmd.ErrOrStderr()
			var f *os.File
			if out != "-" {
				if f, err = os.OpenFile(out+".partial", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
					return err
				}
				defer os.Remove(f.Name()) // gone once renamed
				w, report = f, cmd.OutOrStdout()
			}
			bar := newCountBar(cmd, "exporting")
			sum, err := dump.Write(cmd.Context(), w, db.portable, func(n int) { bar.Set(n) })
			bar.Finish()
			if err == nil && f != nil {
				if err = f.Sync(); err == nil {
					err = f.Close()
				}
				if err == nil {
					err = os.Rename(f.Name(), out)
				}
			}
			if err != nil {
				if f != nil {
					f.Close()
				}
				return err
			}
			fmt.Fprintf(report, "exported from %s:\n%s", db.kind, sum)
			return nil
		},
	}
	store.register(cmd.Flags())
	cmd.Flags().StringVar(&dataPath, "data", envDefault("CUSTODY_DATA", "./custody-data"), "data directory (bolt)")
	cmd.Flags().StringVarP(&out, "output", "o", "-", "file to write (- for standard output)")
	return cmd
}

func importDataCmd() *cobra.Command {
	var (
		dataPath string
		store    storageFlags
	)
	cmd := &cobra.Command{
		Use:   "import-data FILE",
		Short: "Load a file custody export wrote into an empty database",
		Long: `Load the records of a file custody export wrote (- for standard input)
into an empty database of any backend: a file whose records do not match
its summary (cut short, altered) is refused and nothing is left written. Once loaded, the database is exported again and its
counts and SHA-256 compared with the file's.

No server may use the database meanwhile. To move from the embedded
database to PostgreSQL:

  custody export --data ./custody-data -o custody.export
  custody import-data --storage postgres --dsn postgres://... custody.export
  custody serve --data ./custody-data --storage postgres --dsn postgres://...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, size, err := openInput(cmd, args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			db, err := store.open(cmd.Context(), dataPath)
			if err != nil {
				return err
			}
			defer db.Close()
			bar := newByteBar(cmd, size, "importing")
			r := progressbar.NewReader(in, bar)
			sum, err := dump.Import(cmd.Context(), &r, db.portable, nil)
			bar.Finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported into %s, and verified: it holds the file's records\n%s", db.kind, sum)
			return nil
		},
	}
	store.register(cmd.Flags())
	cmd.Flags().StringVar(&dataPath, "data", envDefault("CUSTODY_DATA", "./custody-data"), "data directory (bolt)")
	return cmd
}
