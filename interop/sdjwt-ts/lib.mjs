// Shared helpers for the interop scripts: Node's built-in crypto as the
// signer, verifier, hasher and salt generator of @sd-jwt/*, and the stdin/stdout
// protocol (one JSON request in, one JSON answer out).
//
// Exit codes: 0 with {"ok":true,...} or {"ok":false,"error":"..."} for an
// answer (a verification failure is an answer); non-zero only when the harness
// itself is broken (unreadable request, bug).

import crypto from "node:crypto";
import { SDJwtVcInstance } from "@sd-jwt/sd-jwt-vc";
import { decodeSdJwt, unpack } from "@sd-jwt/decode";

export const b64u = (buf) => Buffer.from(buf).toString("base64url");

// decodePart reads the JSON of a compact JWS part (header or payload).
export const decodePart = (part) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));

function requireOKP(jwk, what) {
  if (!jwk || jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") {
    throw new Error(`${what}: want an OKP Ed25519 JWK, got ${JSON.stringify(jwk)}`);
  }
}

export function publicKey(jwk, what = "public key") {
  requireOKP(jwk, what);
  return crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x }, format: "jwk" });
}

export function privateKey(jwk, what = "private key") {
  requireOKP(jwk, what);
  if (typeof jwk.d !== "string") throw new Error(`${what}: JWK has no "d"`);
  return crypto.createPrivateKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x, d: jwk.d }, format: "jwk" });
}

// signer returns an @sd-jwt Signer: the base64url Ed25519 signature of data.
export const signer = (key) => async (data) => b64u(crypto.sign(null, Buffer.from(data), key));

// edVerify checks an EdDSA compact JWS signing input and signature. It also
// refuses any header alg other than EdDSA: @sd-jwt/core leaves alg checks to
// the verifier callback.
export function edVerify(key, data, sig) {
  const header = decodePart(data.split(".")[0]);
  if (header.alg !== "EdDSA") throw new Error(`unexpected alg ${JSON.stringify(header.alg)}, want EdDSA`);
  return crypto.verify(null, Buffer.from(data), key, Buffer.from(sig, "base64url"));
}

// verifier returns an @sd-jwt Verifier for a fixed public key.
export const verifier = (key) => async (data, sig) => edVerify(key, data, sig);

export async function hasher(data, alg) {
  if (alg !== "sha-256") throw new Error(`unsupported _sd_alg ${alg}`);
  const buf = typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(new Uint8Array(data));
  return new Uint8Array(crypto.createHash("sha256").update(buf).digest());
}

export const saltGenerator = async (length) => b64u(crypto.randomBytes(length));

// makeVerifier prepares a verifier for presentations of one issuer and returns
// verifyOne(sdjwt) -> {ok:true, claims, status} or {ok:false, error}.
//
// What @sd-jwt/sd-jwt-vc 0.19.0 checks: the issuer signature, iat/nbf/exp
// against `now`, the disclosures' digests, requiredClaimKeys, the key-binding
// JWT (typ kb+jwt, signature by cnf.jwk via kbVerifier, nonce, sd_hash) when a
// nonce is given, and the status list JWT's signature and iat/nbf/exp.
// What it leaves to the caller and this harness adds: alg EdDSA on every JWT
// (edVerify), typ dc+sd-jwt on the credential, the key-binding JWT's aud,
// typ statuslist+jwt and sub == status_list.uri on the status list token, and
// (RFC 9901 7.1 step 3.5) that every disclosure is referenced by a digest and
// none is repeated: 0.19.0 silently drops unreferenced disclosures.
// The status value is reported, never judged: status is the number read from
// the list (0 valid, 1 invalid, 2 suspended, ...), or null when the credential
// has no status or no statusListToken was given (then status is not checked).
export function makeVerifier(req) {
  const issuerKey = publicKey(req.issuerJwk, "issuerJwk");
  const statusKey = req.statusListIssuerJwk ? publicKey(req.statusListIssuerJwk, "statusListIssuerJwk") : issuerKey;
  if (req.requireKeyBinding && !req.nonce) throw new Error("requireKeyBinding needs a nonce");
  const now = req.now || Math.floor(Date.now() / 1000);
  let status = null;
  let statusURI = null;

  const vc = new SDJwtVcInstance({
    hasher,
    hashAlg: "sha-256",
    verifier: verifier(issuerKey),
    statusVerifier: async (data, sig) => {
      const header = decodePart(data.split(".")[0]);
      if (header.typ !== "statuslist+jwt") throw new Error(`status list token typ ${JSON.stringify(header.typ)}, want statuslist+jwt`);
      const payload = decodePart(data.split(".")[1]);
      if (payload.sub !== statusURI) throw new Error(`status list token sub ${JSON.stringify(payload.sub)} != status_list.uri ${JSON.stringify(statusURI)}`);
      return edVerify(statusKey, data, sig);
    },
    kbVerifier: async (data, sig, payload) => {
      const jwk = payload && payload.cnf && payload.cnf.jwk;
      if (!jwk) throw new Error("credential has no cnf.jwk");
      return edVerify(publicKey(jwk, "cnf.jwk"), data, sig);
    },
    statusListFetcher: async (uri) => {
      statusURI = uri;
      return req.statusListToken;
    },
    statusValidator: async (s) => {
      status = s;
    },
  });
  if (!req.statusListToken) {
    // No token given: do not fetch over the network, do not check status.
    vc.verifyStatus = async () => {};
  }

  return async function verifyOne(sdjwt) {
    status = null;
    statusURI = null;
    try {
      const opts = { currentDate: now };
      if (req.requiredClaims && req.requiredClaims.length) opts.requiredClaimKeys = req.requiredClaims;
      if (req.requireKeyBinding) opts.keyBindingNonce = req.nonce;
      const res = await vc.verify(sdjwt, opts);
      await checkDisclosuresReferenced(sdjwt);
      if (res.header.typ !== "dc+sd-jwt") throw new Error(`credential typ ${JSON.stringify(res.header.typ)}, want dc+sd-jwt`);
      if (req.requireKeyBinding) {
        if (!res.kb) throw new Error("no key binding verified");
        if (res.kb.payload.aud !== req.aud) {
          throw new Error(`key binding aud ${JSON.stringify(res.kb.payload.aud)}, want ${JSON.stringify(req.aud)}`);
        }
      }
      return { ok: true, claims: res.payload, status };
    } catch (err) {
      return { ok: false, error: String((err && err.message) || err) };
    }
  };
}

// checkDisclosuresReferenced rejects a presentation carrying a disclosure whose
// digest the issuer-signed payload (or another disclosure) does not reference,
// or the same disclosure twice.
async function checkDisclosuresReferenced(sdjwt) {
  const { jwt, disclosures } = await decodeSdJwt(sdjwt, hasher);
  const { disclosureKeymap } = await unpack(jwt.payload, disclosures, hasher);
  const referenced = new Set(Object.values(disclosureKeymap));
  const seen = new Set();
  for (const d of disclosures) {
    const digest = await d.digest({ hasher, alg: jwt.payload._sd_alg || "sha-256" });
    if (seen.has(digest)) throw new Error(`disclosure ${d.encode()} appears twice`);
    seen.add(digest);
    if (!referenced.has(digest)) throw new Error(`disclosure ${d.encode()} is not referenced by any digest`);
  }
}

// main runs handler(request) and prints its answer. A thrown error is a
// harness failure: message on stderr, exit 1.
export async function main(handler) {
  try {
    const chunks = [];
    for await (const c of process.stdin) chunks.push(c);
    const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    const answer = await handler(req);
    process.stdout.write(JSON.stringify(answer) + "\n");
  } catch (err) {
    process.stderr.write(`${(err && err.stack) || err}\n`);
    process.exitCode = 1;
  }
}
