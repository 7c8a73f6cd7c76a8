---@meta fotahost.digest
-- API stub for script authors (LuaLS). The module is C: plugins/digest.c, a
-- plugin (loaded on first require) linking OpenSSL's libcrypto, or mbedTLS
-- where libcurl is built on it (OpenWrt): make DIGEST_LIB=mbedtls.
-- Errors: sha256/md5 misuse raises; a file that cannot be opened or read returns
-- nil, "path: strerror", code: code is the errno (an integer).

---MD5, SHA-1 and SHA-256, streaming, hex output.
---@class fotahost.digest
local digest = {}

---The library the digests come from, and its version as loaded:
---"libcrypto 3.0.22", "mbedtls 2.28.3".
---@type string
digest.backend = nil

---@class fotahost.digest.Hasher
local Hasher = {}

---@param data string
---@return string hex lowercase
function digest.md5(data) end

---@param data string
---@return string hex
function digest.sha1(data) end

---@param data string
---@return string hex
function digest.sha256(data) end

---A hasher to feed as data arrives (a download's sink).
---@param name "md5"|"sha1"|"sha256"
---@return fotahost.digest.Hasher
function digest.new(name) end

---Hashes a file in 64 KiB chunks.
---@param path string
---@param name? "md5"|"sha1"|"sha256" default "sha256"
---@return string|nil hex
---@return string? err "path: cause"
---@return integer? errno
function digest.file(path, name) end

---@param data string
---@return fotahost.digest.Hasher self
function Hasher:update(data) end

---Finishes (no more update) and returns the hex digest; repeatable.
---@return string
function Hasher:hex() end

---The raw digest bytes.
---@return string
function Hasher:digest() end

return digest
