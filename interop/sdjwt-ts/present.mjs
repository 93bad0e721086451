// present.mjs: make a presentation of an issued SD-JWT VC with @sd-jwt/sd-jwt-vc,
// disclosing the named top-level claims and adding a key-binding JWT signed
// with the holder key.
// stdin:  {"sdjwt","holderPrivateJwk","disclose":[names],"aud","nonce","iat"}
// stdout: {"ok":true,"presentation":"..."} or {"ok":false,"error":"..."}
import { SDJwtVcInstance } from "@sd-jwt/sd-jwt-vc";
import { hasher, main, privateKey, signer } from "./lib.mjs";

main(async (req) => {
  const holderKey = privateKey(req.holderPrivateJwk, "holderPrivateJwk");
  const vc = new SDJwtVcInstance({ hasher, hashAlg: "sha-256", kbSigner: signer(holderKey), kbSignAlg: "EdDSA" });
  const frame = Object.fromEntries((req.disclose || []).map((name) => [name, true]));
  try {
    const presentation = await vc.present(req.sdjwt, frame, {
      kb: { payload: { iat: req.iat || Math.floor(Date.now() / 1000), aud: req.aud, nonce: req.nonce } },
    });
    return { ok: true, presentation };
  } catch (err) {
    return { ok: false, error: String((err && err.message) || err) };
  }
});
