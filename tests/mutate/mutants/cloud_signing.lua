-- Mutants of the local cloud's firmware signatures (issue 15, item 5:
-- dev/scripts/fotahost/mcs_cloud/store.lua and admin_api.lua,
-- dev/scripts/tools/cloud.lua): NAME.minisig is served for the bytes it
-- signs only, a broken one is refused where it comes in, and `cloud push`
-- says when a firmware has none.
local SPEC = { "spec/cloud_signing_spec.lua" }
local P = "dev/scripts/fotahost/mcs_cloud/"
local STORE, ADMIN, CLI = P .. "store.lua", P .. "admin_api.lua", "dev/scripts/tools/cloud.lua"

return {
  { name = "cloud-stale-signature-kept", file = STORE,
    from = "if sys.lstat(path .. SIG) then",
    to = "if false then",
    specs = SPEC,
    why = "an unsigned re-upload leaves the old NAME.minisig served beside new bytes: a device verifies a"
      .. " signature of other bytes, and the listing and the files disagree" },
  { name = "cloud-upload-signature-unchecked", file = STORE,
    from = "    local info, serr = parse_signature(signature, \"firmware \" .. version)\n"
      .. "    if not info then return nil, serr, 400 end\n",
    to = "",
    specs = SPEC,
    why = "a malformed signature is written to the firmware directory before anything looks at it: the"
      .. " refused upload leaves its files behind" },
  { name = "cloud-placed-signature-unchecked", file = STORE,
    from = "  local info, perr = parse_signature(text, path)\n  if not info then return nil, perr, 400 end\n",
    to = "  local info = minisign().signature_info(text) or { key_id = \"?\", comment = \"\" }\n",
    specs = SPEC,
    why = "a broken NAME.minisig in the firmware directory is registered and served: devices learn of it"
      .. " only as a refused update" },
  { name = "cloud-signature-named-firmware", file = STORE,
    from = "  bad = signature_name(name)\n",
    to = "  bad = nil\n",
    specs = SPEC,
    why = "an upload named NAME.minisig overwrites another firmware's signature" },
  { name = "cloud-push-answer-without-firmware", file = ADMIN,
    from = "url, md5, pushed = self:firmware_url(fw, req), fw.md5, self:firmware_json(fw, req)",
    to = "url, md5 = self:firmware_url(fw, req), fw.md5",
    specs = SPEC,
    why = "the push answer no longer says which firmware went: cloud push never warns of an unsigned one" },
  { name = "cloud-push-no-unsigned-warning", file = CLI,
    from = "if type(fw) == \"table\" and fw.signed == false then",
    to = "if false then",
    specs = SPEC,
    why = "cloud push sends an unsigned firmware without a word: every board with trusted_keys refuses it" },
}
