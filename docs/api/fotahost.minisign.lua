---@meta fotahost.minisign
-- API stub for script authors (LuaLS). The module is C: plugins/minisign.c,
-- a plugin (loaded on first require) linking libsodium (Ed25519, BLAKE2b);
-- the files are parsed by plugins/minisign/minisign.c, which `make fuzz`
-- fuzzes. The format: minisign's (`minisign -G`, `minisign -S`).
-- Errors: misuse raises; a refused key, signature or file returns nil and a
-- message naming what failed; a file that cannot be read returns nil,
-- "path: strerror", errno.

---minisign signatures: minisign's default `ED` (Ed25519 over the file's
---BLAKE2b-512) and legacy `Ed` (`minisign -S -l`, Ed25519 over the file),
---with the global signature over the trusted comment.
---@class fotahost.minisign
local minisign = {}

---A trusted public key, as public_key() returns it.
---@class fotahost.minisign.Key
---@field id string the key id as minisign shows it: the key number in uppercase hex, no leading zeros ("4E2F9C1A0B3D5E77")
---@field keynum string the 8 raw bytes the id is made of
---@field pk string the 32-byte Ed25519 public key

---What a good signature tells: only returned once both signatures verified.
---@class fotahost.minisign.Verified
---@field key_id string the id of the key that signed
---@field comment string the trusted comment, without "trusted comment: " and the line end
---@field alg "ED"|"Ed"

---The limits every input is held to, in bytes: `comment` 8192 (a trusted
---comment, minisign's own limit), `untrusted_comment` 1024 (a first line),
---`signature_file` 12288 (a whole .minisig: a download's size cap),
---`key_file` 2048 (a whole .pub), `legacy_file` 16 MiB (the largest file an
---`Ed` signature is checked over: it is read whole; `ED` files are hashed as
---they are read, any size).
---@type { comment: integer, untrusted_comment: integer, signature_file: integer, key_file: integer, legacy_file: integer }
minisign.limits = nil

---The library and its version as loaded: "libsodium 1.0.18".
---@type string
minisign.backend = nil

---Reads a public key: minisign's .pub file ("untrusted comment: ..." then
---the base64 line) or the base64 line alone (as `minisign -P` takes it).
---Base64 is strict (alphabet, padding, unused bits) and must decode to 42
---bytes whose algorithm is "Ed".
---
---    local key = assert(minisign.public_key(h.read("fotahost.pub")))
---@param text string
---@return fotahost.minisign.Key|nil key
---@return string? err "malformed public key: line 2 is not base64", "... decodes to 41 bytes, 42 expected"
function minisign.public_key(text) end

---Verifies the signature file's text `sig_text` (FILE.minisig) over the
---file at `path`, with any of `keys` (a list: several for a key rotation;
---each a Key or a .pub's text). In order: every line parsed and
---length-checked; the algorithm (ED or Ed); the key whose number the
---signature names; the signature over the file; the global signature over
---the trusted comment. The messages:
---  "signed by key <ID>, which is not a trusted key"
---  "the signature does not match the file (signed by key <ID>)"
---  "the trusted comment does not match its signature"
---  "malformed signature: line 2 is not base64" (and the other lines, lengths, limits)
---  'unsupported signature algorithm "XX" (ED or Ed expected)'
---  "trusted key #2: malformed public key: ..." (a key text that does not parse)
---  "no trusted key to verify the signature with" (an empty list)
---
---    local ok, err = minisign.verify({ old, new }, sig_text, "blink.hex")
---@param keys (fotahost.minisign.Key|string)[]
---@param sig_text string
---@param path string
---@return fotahost.minisign.Verified|nil verified
---@return string? err
---@return integer? errno when the file could not be read
function minisign.verify(keys, sig_text, path) end

---verify() over bytes in memory instead of a file: what the update policy
---uses, so the signature is checked over exactly the bytes it then parses.
---A legacy (Ed) signature over 64 bytes is refused, as for a file.
---@param keys (fotahost.minisign.Key|string)[]
---@param sig_text string
---@param data string
---@return fotahost.minisign.Verified|nil verified
---@return string? err
function minisign.verify_data(keys, sig_text, data) end

---A signature file parsed, NOTHING verified: its key id, trusted comment
---and form, for display (the local cloud lists which key signed a
---firmware). Never a basis for trust: use verify() or verify_data().
---@param sig_text string
---@return fotahost.minisign.Verified|nil info
---@return string? err "malformed signature: ..."
function minisign.signature_info(sig_text) end

return minisign
