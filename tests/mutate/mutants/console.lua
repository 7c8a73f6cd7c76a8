-- Mutants of the local cloud's web console and its event feed
-- (dev/scripts/fotahost/mcs_cloud/console.lua, events.lua, and where the
-- face and the admin API call them): the Host check against DNS
-- rebinding, no request another site's page made, the security headers,
-- a long poll that wakes, and no device key in an event.
local SPEC = { "spec/console_api_spec.lua" }
local P = "dev/scripts/fotahost/mcs_cloud/"
local FACE, CONSOLE, ADMIN, EVENTS = "dev/scripts/fotahost/mcs_cloud.lua", P .. "console.lua", P .. "admin_api.lua",
  P .. "events.lua"
local COMMON = P .. "common.lua"

return {
  { name = "console-host-check-skipped", file = FACE,
    from = "if misdirected then return fail(res, misdirected, why) end",
    to = "if false then return fail(res, misdirected, why) end",
    specs = SPEC, filter = "Host check",
    why = "a page of any site whose name was made to resolve to 127.0.0.1 (DNS rebinding) reads the console "
      .. "and, with a token it phished or guessed, drives the admin API" },
  { name = "console-host-any-port", file = CONSOLE,
    from = "  if (port or 80) ~= self.port then return false end\n",
    to = "",
    specs = SPEC, filter = "Host check",
    why = "another service's page on the same host (another port, another origin) passes for the console" },
  { name = "console-sec-fetch-site-ignored", file = ADMIN,
    from = "  if cross_site(req) then\n",
    to = "  if false then\n",
    specs = SPEC, filter = "from a browser",
    why = "another site's page reads the admin API with GETs, which carry no Origin" },
  { name = "console-same-site-trusted", file = ADMIN,
    from = [[return site ~= nil and site ~= "same-origin" and site ~= "none"]],
    to = [[return site == "cross-site"]],
    specs = SPEC, filter = "from a browser",
    why = "a page of a sibling host (same site, another origin: another device's web UI) drives the admin API" },
  { name = "console-headers-dropped", file = FACE,
    from = "    res.extra_headers = console.HEADERS\n",
    to = "",
    specs = SPEC,
    why = "no CSP: a device's status that slips into markup runs as script; the console can be framed" },
  { name = "console-event-shows-key", file = ADMIN,
    from = "if sent then self:emit_command(dev, channel, value, via) end",
    to = [[if sent then self:emit("command", { device = dev.id, channel = channel, command = sent, via = via }) end]],
    specs = SPEC, filter = "never the line",
    why = "every command event hands the device key to whoever reads the feed" },
  { name = "console-long-poll-never-wakes", file = EVENTS,
    from = "  for w in pairs(watches) do sched.cancel(w) end -- its request wakes\n",
    to = "",
    specs = SPEC, filter = "long%-polls",
    why = "the console shows a status only when its 25 s poll ends: the live view is not live" },
  { name = "console-long-poll-ignores-client", file = EVENTS,
    from = [[if sched.wait_fd(sock:fd(), "r", seconds) then return "client" end]],
    to = [[sched.sleep(seconds)]],
    specs = SPEC, filter = "went away",
    why = "a poll whose page reloaded holds its connection slot 25 s: device requests and firmware downloads get 503" },
  { name = "console-long-poll-waiters-uncapped", file = EVENTS,
    from = "and self._event_waiters < self:events_max_waiters() then",
    to = "then",
    specs = SPEC, filter = "waiters' cap",
    why = "a few tabs of the console hold every connection slot: devices get 503 while they wait" },
  { name = "console-channel-length-unchecked", file = P .. "device_api.lua",
    from = [[  if #chn > C.MAX_CHANNEL then return fmt("data channel id of %d bytes (at most %d)", #chn, C.MAX_CHANNEL) end
]],
    to = "",
    specs = SPEC, filter = "over 64 bytes",
    why = "a device posts points on 200 KB channel names: the events ring and every answer naming them grow "
      .. "to hundreds of MB" },
  { name = "console-event-channel-uncut", file = EVENTS,
    from = "channel = (E.cut(channel, C.MAX_CHANNEL))",
    to = "channel = channel",
    specs = SPEC, filter = "over 64 bytes",
    why = "a channel name a new way in (the broker, a parser change) lets through swells the events ring" },
  { name = "console-json-non-finite-taken", file = COMMON,
    from = [[    if value ~= value or value == math.huge or value == -math.huge then return "a number that is not finite" end
]],
    to = "",
    specs = SPEC, filter = "hostile numbers",
    why = "a device posts 1e999: stored, and shown (as null) where the device meant a number" },
  { name = "console-json-depth-unbounded", file = COMMON,
    from = [[    if depth > C.MAX_DEPTH then return fmt("nested deeper than %d levels", C.MAX_DEPTH) end
]],
    to = "",
    specs = SPEC, filter = "hostile numbers",
    why = "values nested 999 deep pass the decoder, then every answer holding them passes cjson's limit: "
      .. "/admin/devices answers 500 until the point ages out" },
  { name = "console-encode-non-finite-raises", file = COMMON,
    from = [[encoder.encode_invalid_numbers("null")
]],
    to = "",
    specs = SPEC, filter = "hostile numbers",
    why = "one inf that gets stored (a new way in) makes /admin/devices answer 500 to everyone" },
}
