package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imi-city/imi/internal/client"
	"github.com/imi-city/imi/internal/did"
	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/ledger"
	"github.com/imi-city/imi/internal/tx"
)

// A resident's key directory holds:
//
//	resident.key   the signing key (stays with the resident)
//	recovery.key   the pre-committed recovery key (print it, keep it offline)
//	request.json   what the resident hands the registrar: DID, public key,
//	               recovery-key hash; nothing secret and nothing personal
const (
	residentKeyFile = "resident.key"
	recoveryKeyFile = "recovery.key"
	requestFile     = "request.json"
)

// Request is what a resident brings to the service-centre counter.
type Request struct {
	DID          string     `json:"did"`
	Key          key.Public `json:"key"`
	RecoveryHash tx.Hash32  `json:"recovery_hash"`
}

func init() {
	register(&command{
		name:    "resident end-delegation",
		summary: "end a guardian's delegation over yourself (an adult ward; a minor's is ended by the registrar)",
		usage:   "--dir DIR --id ID [--node URL]",
		examples: `  imi resident end-delegation --dir ./grandma --id 3f9c0a…
  # the id is shown by imi registrar delegate, and in GET /v1/me/delegations`,
		run: residentEndDelegation,
	})
	register(&command{
		name:    "resident keygen",
		summary: "make a resident's key pair, recovery key and registration request",
		usage:   "--dir DIR",
		examples: `  imi resident keygen --dir ./alice
  # hand ./alice/request.json to the registrar; keep ./alice/recovery.key offline`,
		run: residentKeygen,
	})
	register(&command{
		name:     "resident rotate",
		summary:  "replace the resident's key (signed by the current key)",
		usage:    "--dir DIR [--node URL]",
		examples: `  imi resident rotate --dir ./alice`,
		run:      residentRotate,
	})
	register(&command{
		name:    "resident recover",
		summary: "bind a new key after losing it, with the pre-committed recovery key",
		usage:   "--dir DIR [--node URL]",
		examples: `  imi resident recover --dir ./alice
  # uses ./alice/recovery.key once, writes a new resident.key and a new recovery.key`,
		run: residentRecover,
	})
	register(&command{
		name:     "resident deactivate",
		summary:  "deactivate the resident's own DID for good",
		usage:    "--dir DIR --yes [--node URL]",
		examples: `  imi resident deactivate --dir ./alice --yes`,
		run:      residentDeactivate,
	})
}

// nodeOpt is the --node flag.
type nodeOpt struct{ nodes *string }

func addNode(fsNodes func(string, string, string) *string, e *env) nodeOpt {
	def := e.getenv("IMI_NODE")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	return nodeOpt{nodes: fsNodes("node", def, "node URL(s), comma-separated; the next is tried if one does not answer")}
}

func (n nodeOpt) client() (*client.Client, error) { return client.New(*n.nodes) }

func residentKeygen(ctx context.Context, e *env, args []string) error {
	c := find("resident keygen")
	fs := c.flags(e)
	dir := fs.String("dir", "", "directory for the new keys (required; must not hold keys yet)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("dir", *dir); err != nil {
		return err
	}
	k, err := key.Generate()
	if err != nil {
		return err
	}
	rk, err := key.Generate()
	if err != nil {
		return err
	}
	if err := k.WriteFile(filepath.Join(*dir, residentKeyFile)); err != nil {
		return err
	}
	if err := rk.WriteFile(filepath.Join(*dir, recoveryKeyFile)); err != nil {
		return err
	}
	req := Request{DID: did.FromKey(k.Public()).String(), Key: k.Public(), RecoveryHash: key.RecoveryHash(rk.Public())}
	if err := writeJSONFile(filepath.Join(*dir, requestFile), req); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, `Your DID will be %s
  %s   your signing key — keep it private
  %s   your recovery key — print or copy it and keep it offline; it is used once, if you lose your key
  %s   bring this to the service centre: it holds your public key and nothing personal
`, req.DID, filepath.Join(*dir, residentKeyFile), filepath.Join(*dir, recoveryKeyFile), filepath.Join(*dir, requestFile))
	return nil
}

func residentRotate(ctx context.Context, e *env, args []string) error {
	c := find("resident rotate")
	fs := c.flags(e)
	dir := fs.String("dir", "", "the resident's key directory (required)")
	n := addNode(fs.String, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("dir", *dir); err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	cur, d, err := loadResident(*dir)
	if err != nil {
		return err
	}
	next, err := key.Generate()
	if err != nil {
		return err
	}
	// The new key is on disk before the ledger knows it, so a crash cannot
	// leave the resident with a key they don't have.
	pending := filepath.Join(*dir, residentKeyFile+".new")
	if err := next.WriteFile(pending); err != nil {
		return fmt.Errorf("%w (a previous rotation may have been interrupted: check %s)", err, pending)
	}
	res, err := cl.Sign(ctx, cur, d, 0, &tx.RotateKey{NewKey: next.Public()})
	if err != nil {
		os.Remove(pending)
		return explain(err)
	}
	if err := retire(*dir, residentKeyFile, pending); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Key rotated for %s at height %d (tx %s). The old key no longer works.\n", d, res.Height, res.Hash)
	return nil
}

func residentRecover(ctx context.Context, e *env, args []string) error {
	c := find("resident recover")
	fs := c.flags(e)
	dir := fs.String("dir", "", "the resident's key directory, with recovery.key and request.json (required)")
	n := addNode(fs.String, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("dir", *dir); err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	var req Request
	if err := readJSONFile(filepath.Join(*dir, requestFile), &req); err != nil {
		return err
	}
	d, err := did.Parse(req.DID)
	if err != nil {
		return err
	}
	rk, err := key.ReadFile(filepath.Join(*dir, recoveryKeyFile))
	if err != nil {
		return err
	}
	nk, err := key.Generate()
	if err != nil {
		return err
	}
	nrk, err := key.Generate()
	if err != nil {
		return err
	}
	pk, prk := filepath.Join(*dir, residentKeyFile+".new"), filepath.Join(*dir, recoveryKeyFile+".new")
	if err := nk.WriteFile(pk); err != nil {
		return err
	}
	if err := nrk.WriteFile(prk); err != nil {
		os.Remove(pk)
		return err
	}
	res, err := cl.Sign(ctx, rk, d, 0, &tx.Recover{RecoveryKey: rk.Public(), NewKey: nk.Public(), NewRecoveryHash: key.RecoveryHash(nrk.Public())})
	if err != nil {
		os.Remove(pk)
		os.Remove(prk)
		return explain(err)
	}
	if err := retire(*dir, residentKeyFile, pk); err != nil {
		return err
	}
	if err := retire(*dir, recoveryKeyFile, prk); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Recovered %s at height %d (tx %s): a new key is bound and %s holds a new recovery key — keep it offline.\n", d, res.Height, res.Hash, filepath.Join(*dir, recoveryKeyFile))
	return nil
}

func residentDeactivate(ctx context.Context, e *env, args []string) error {
	c := find("resident deactivate")
	fs := c.flags(e)
	dir := fs.String("dir", "", "the resident's key directory (required)")
	yes := fs.Bool("yes", false, "confirm: deactivation cannot be undone by the resident")
	n := addNode(fs.String, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("dir", *dir); err != nil {
		return err
	}
	if !*yes {
		return fmt.Errorf("%w: deactivation is final; add --yes to confirm", errUsage)
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	k, d, err := loadResident(*dir)
	if err != nil {
		return err
	}
	res, err := cl.Sign(ctx, k, d, 0, &tx.Deactivate{DID: d.String(), Reason: ledger.ReasonResidentRequest})
	if err != nil {
		return explain(err)
	}
	fmt.Fprintf(e.stdout, "%s deactivated at height %d (tx %s).\n", d, res.Height, res.Hash)
	return nil
}

func residentEndDelegation(ctx context.Context, e *env, args []string) error {
	c := find("resident end-delegation")
	fs := c.flags(e)
	dir := fs.String("dir", "", "the ward's key directory (required)")
	id := fs.String("id", "", "the delegation's id (required)")
	n := addNode(fs.String, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("dir", *dir); err != nil {
		return err
	}
	if err := need("id", *id); err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	k, d, err := loadResident(*dir)
	if err != nil {
		return err
	}
	res, err := cl.Sign(ctx, k, d, 0, &tx.EndDelegation{Ward: d.String(), ID: *id})
	if err != nil {
		return explain(err)
	}
	fmt.Fprintf(e.stdout, "Delegation %s over %s ended at height %d (tx %s).\n", *id, d, res.Height, res.Hash)
	return nil
}

func loadResident(dir string) (key.Private, did.DID, error) {
	var req Request
	if err := readJSONFile(filepath.Join(dir, requestFile), &req); err != nil {
		return key.Private{}, did.DID{}, err
	}
	d, err := did.Parse(req.DID)
	if err != nil {
		return key.Private{}, did.DID{}, err
	}
	k, err := key.ReadFile(filepath.Join(dir, residentKeyFile))
	return k, d, err
}

// retire keeps the old file as name.old-N and moves pending into place.
func retire(dir, name, pending string) error {
	cur := filepath.Join(dir, name)
	for i := 1; ; i++ {
		old := fmt.Sprintf("%s.old-%d", cur, i)
		if _, err := os.Stat(old); errors.Is(err, os.ErrNotExist) {
			if err := os.Rename(cur, old); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("couldn't retire %s: %w", cur, err)
			}
			break
		}
	}
	if err := os.Rename(pending, cur); err != nil {
		return fmt.Errorf("couldn't install the new key (it is in %s): %w", pending, err)
	}
	return nil
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("couldn't create %s: %w", path, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("couldn't read %s: %w", path, err)
	}
	if err := tx.Unmarshal(b, v); err != nil {
		return fmt.Errorf("couldn't read %s: %w", path, err)
	}
	return nil
}

// explain turns a node's refusal into a line a clerk can act on.
func explain(err error) error {
	var p *client.Problem
	if errors.As(err, &p) {
		msg := fmt.Sprintf("refused (%s): %s", p.Reason, p.Title)
		if p.TitleZH != "" {
			msg += " / " + p.TitleZH
		}
		if p.Detail != "" {
			msg += "\n  detail: " + p.Detail
		}
		return errors.New(msg)
	}
	return err
}
