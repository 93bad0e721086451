// status.mjs: read one entry of an IETF Token Status List token with
// @sd-jwt/jwt-status-list, after checking its EdDSA signature, typ
// statuslist+jwt and (when "now" is given) iat/exp with Node crypto.
// stdin:  {"token","issuerJwk","idx","now"?}
// stdout: {"ok":true,"status":n,"bits":b} or {"ok":false,"error":"..."}
import { getListFromStatusListJWT } from "@sd-jwt/jwt-status-list";
import { decodePart, edVerify, main, publicKey } from "./lib.mjs";

main(async (req) => {
  const key = publicKey(req.issuerJwk, "issuerJwk");
  try {
    const parts = String(req.token).split(".");
    if (parts.length !== 3) throw new Error("status list token is not a compact JWS");
    const header = decodePart(parts[0]);
    if (header.typ !== "statuslist+jwt") throw new Error(`typ ${JSON.stringify(header.typ)}, want statuslist+jwt`);
    if (!edVerify(key, `${parts[0]}.${parts[1]}`, parts[2])) throw new Error("invalid status list token signature");
    const payload = decodePart(parts[1]);
    if (req.now && payload.exp && payload.exp < req.now) throw new Error("status list token is expired");
    if (req.now && payload.iat && payload.iat > req.now) throw new Error("status list token is not yet valid");
    const list = getListFromStatusListJWT(req.token);
    return { ok: true, status: list.getStatus(req.idx), bits: list.getBitsPerStatus() };
  } catch (err) {
    return { ok: false, error: String((err && err.message) || err) };
  }
});
