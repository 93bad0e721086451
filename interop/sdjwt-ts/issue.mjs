// issue.mjs: issue an SD-JWT VC (typ dc+sd-jwt, EdDSA) with @sd-jwt/sd-jwt-vc,
// so that IMI's verifier can be tested on credentials it did not make.
// stdin:  {"issuerPrivateJwk","iss","kid","vct","holderJwk","claims":{...},
//          "disclosable":[names],"iat","exp","statusUri","statusIdx"}
// stdout: {"ok":true,"sdjwt":"..."} or {"ok":false,"error":"..."}
// The payload is iss, iat, exp (when non-zero), vct, cnf.jwk, status.status_list
// (when statusUri is set) and the claims; the names in disclosable are made
// selectively disclosable (top level), everything else is plain.
import { SDJwtVcInstance } from "@sd-jwt/sd-jwt-vc";
import { hasher, main, privateKey, saltGenerator, signer } from "./lib.mjs";

main(async (req) => {
  const issuerKey = privateKey(req.issuerPrivateJwk, "issuerPrivateJwk");
  const vc = new SDJwtVcInstance({ hasher, hashAlg: "sha-256", saltGenerator, signer: signer(issuerKey), signAlg: "EdDSA" });
  const payload = { iss: req.iss, iat: req.iat || Math.floor(Date.now() / 1000), vct: req.vct, cnf: { jwk: req.holderJwk } };
  if (req.exp) payload.exp = req.exp;
  if (req.statusUri) payload.status = { status_list: { idx: req.statusIdx || 0, uri: req.statusUri } };
  Object.assign(payload, req.claims || {});
  try {
    const sdjwt = await vc.issue(payload, { _sd: req.disclosable || [] }, { header: req.kid ? { kid: req.kid } : {} });
    return { ok: true, sdjwt };
  } catch (err) {
    return { ok: false, error: String((err && err.message) || err) };
  }
});
