package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/imi-city/imi/internal/key"
	"github.com/imi-city/imi/internal/tx"
)

func init() {
	register(&command{
		name:     "authority list",
		summary:  "list the consortium's authorities, DIDs, roles and validators",
		usage:    "[--node URL] [--json]",
		examples: `  imi authority list`,
		run:      authorityList,
	})
	register(&command{
		name:     "authority keygen",
		summary:  "make a signing key for a new authority",
		usage:    "--out FILE",
		examples: `  imi authority keygen --out ./cc-tax.key    # prints the public key to put in a proposal`,
		run:      authorityKeygen,
	})
	register(&command{
		name:    "authority propose",
		summary: "propose adding or removing an authority, or changing its roles or validator",
		usage:   "(--as ID | --key FILE) --action add_authority|remove_authority|set_roles|set_validator --id ID [fields]",
		examples: `  imi authority propose --as cc-psb --action add_authority --id cc-tax \
      --name-zh 禅城区税务局 --name-en "Chancheng Tax Bureau" \
      --public-key ed25519-pub:… --roles service_provider --reference CC-GOV/2026-014
  imi authority propose --as cc-psb --action set_roles --id cc-hsb --roles issuer:medical_insurance
  imi authority propose --as cc-psb --action set_validator --id cc-hrss --validator-key BASE64 --power 10
  imi authority propose --as cc-psb --action remove_authority --id cc-tax`,
		run: authorityPropose,
	})
	register(&command{
		name:    "authority vote",
		summary: "approve a pending proposal; it is carried out once more than two-thirds approve",
		usage:   "(--as ID | --key FILE) --proposal p-N",
		examples: `  imi authority vote --as cc-hrss --proposal p-1
  imi authority vote --as cc-hsb --proposal p-1`,
		run: authorityVote,
	})
	register(&command{
		name:     "authority proposals",
		summary:  "list governance proposals and their approvals",
		usage:    "[--node URL]",
		examples: `  imi authority proposals`,
		run:      authorityProposals,
	})
}

func authorityList(ctx context.Context, e *env, args []string) error {
	c := find("authority list")
	fs := c.flags(e)
	n := addNode(fs.String, e)
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	r, err := cl.Authorities(ctx)
	if err != nil {
		return explain(err)
	}
	if *asJSON {
		return printJSON(e, r)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tNAME\tDID\tROLES\tVALIDATOR POWER\n")
	for _, a := range r.Authorities {
		fmt.Fprintf(tw, "%s\t%s / %s\t%s\t%s\t%d\n", a.ID, a.NameZH, a.NameEN, a.DID, strings.Join(a.Roles, ","), a.Power)
	}
	fmt.Fprintf(tw, "(as of height %d)\n", r.Height)
	return tw.Flush()
}

func authorityKeygen(ctx context.Context, e *env, args []string) error {
	c := find("authority keygen")
	fs := c.flags(e)
	out := fs.String("out", "", "key file to create (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("out", *out); err != nil {
		return err
	}
	k, err := key.Generate()
	if err != nil {
		return err
	}
	if err := k.WriteFile(*out); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Wrote %s. Public key for the proposal:\n%s\n", *out, k.Public())
	return nil
}

func authorityPropose(ctx context.Context, e *env, args []string) error {
	c := find("authority propose")
	fs := c.flags(e)
	s := addSigner(fs, e)
	n := addNode(fs.String, e)
	action := fs.String("action", "", "add_authority, remove_authority, set_roles or set_validator (required)")
	id0 := fs.String("id", "", "the authority the proposal is about (required)")
	nameZH := fs.String("name-zh", "", "Chinese name (add_authority)")
	nameEN := fs.String("name-en", "", "English name (add_authority)")
	pub := fs.String("public-key", "", "the new authority's signing key, ed25519-pub:… (add_authority)")
	roles := fs.String("roles", "", "comma-separated roles: registrar, service_provider, issuer:<type>")
	valKey := fs.String("validator-key", "", "base64 Ed25519 validator key of the authority's node")
	power := fs.Int64("power", 0, "validator voting power (0: no validator)")
	endpoint := fs.String("endpoint", "", "URL of the authority's node API")
	reference := fs.String("reference", "", "number of the decision document kept off the chain (letters, digits, - _ . / :)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("action", *action); err != nil {
		return err
	}
	if err := need("id", *id0); err != nil {
		return err
	}
	spec := tx.AuthoritySpec{ID: *id0, NameZH: *nameZH, NameEN: *nameEN, Roles: []string{}, Power: *power, Endpoint: *endpoint}
	if *roles != "" {
		spec.Roles = strings.Split(*roles, ",")
		for i := range spec.Roles {
			spec.Roles[i] = strings.TrimSpace(spec.Roles[i])
		}
		slices.Sort(spec.Roles)
	}
	if *pub != "" {
		p, err := key.ParsePublic(*pub)
		if err != nil {
			return err
		}
		spec.Key = p
	}
	if *valKey != "" {
		b, err := base64.StdEncoding.DecodeString(*valKey)
		if err != nil {
			return fmt.Errorf("%w: --validator-key is not base64", errUsage)
		}
		spec.ValidatorKey = b
	}
	res, cl, err := s.submit(ctx, n, &tx.Propose{Action: *action, Authority: spec, Reference: *reference})
	if err != nil {
		return err
	}
	id := "(see imi authority proposals)"
	if list, err := cl.Proposals(ctx); err == nil {
		for _, p := range list.Proposals {
			if p.Created.Height == res.Height && p.Action == *action && p.Authority.ID == *id0 {
				id = p.ID + " — " + p.Status
			}
		}
	}
	fmt.Fprintf(e.stdout, "Proposal %s, submitted at height %d (tx %s). It is carried out once more than two-thirds of the authorities approve (imi authority vote).\n", id, res.Height, res.Hash)
	return nil
}

func authorityVote(ctx context.Context, e *env, args []string) error {
	c := find("authority vote")
	fs := c.flags(e)
	s := addSigner(fs, e)
	n := addNode(fs.String, e)
	id := fs.String("proposal", "", "proposal id, p-N (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := need("proposal", *id); err != nil {
		return err
	}
	res, cl, err := s.submit(ctx, n, &tx.Vote{Proposal: *id})
	if err != nil {
		return err
	}
	p, err := cl.Proposal(ctx, *id)
	if err != nil {
		return explain(err)
	}
	fmt.Fprintf(e.stdout, "Approved %s at height %d (tx %s). Status: %s, approvals: %s. %s\n", *id, res.Height, res.Hash, p.Status, strings.Join(p.Approvals, ", "), p.Outcome)
	return nil
}

func authorityProposals(ctx context.Context, e *env, args []string) error {
	c := find("authority proposals")
	fs := c.flags(e)
	n := addNode(fs.String, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	cl, err := n.client()
	if err != nil {
		return err
	}
	r, err := cl.Proposals(ctx)
	if err != nil {
		return explain(err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tACTION\tAUTHORITY\tSTATUS\tAPPROVALS\tEXPIRES\tOUTCOME\n")
	for _, p := range r.Proposals {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Action, p.Authority.ID, p.Status, strings.Join(p.Approvals, ","), p.Expires.UTC().Format(time.DateTime), p.Outcome)
	}
	return tw.Flush()
}

func printJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
