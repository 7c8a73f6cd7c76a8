-- Mutants of fotahost.mqtt's safeguards: the bound on kept messages, the
-- payload cap, keepalive pings and TLS verification (plugins/mqtt.core.c,
-- scripts/fotahost/mqtt.lua).
local MQTT = { "spec/mqtt_spec.lua" }

return {
  ---------------------------------------------------------------- received messages
  { name = "mqtt-max-queue-ignored", file = "scripts/fotahost/mqtt.lua",
    from = "max_payload = opts.max_payload, max_queue = opts.max_queue,",
    to = "max_payload = opts.max_payload,",
    specs = MQTT,
    why = "a client's max_queue is ignored: the default bound applies instead" },
  { name = "mqtt-drop-uncounted", file = "plugins/mqtt.core.c",
    from = "        c->q_len--;\n        c->dropped++;\n",
    to = "        c->q_len--;\n",
    specs = MQTT,
    why = "messages dropped from a full queue are not counted: a flood goes unnoticed" },
  { name = "mqtt-drop-newest", file = "plugins/mqtt.core.c",
    from = "    if (c->q_len == c->q_max) {   /* full: the oldest goes */",
    to = "    if (c->q_len == c->q_max) {   /* full: the newest goes */\n" ..
         "        c->dropped++;\n        return;\n    }\n    if (0) {",
    specs = MQTT,
    why = "a full queue keeps stale messages and drops the latest commands" },
  { name = "mqtt-payload-uncapped", file = "plugins/mqtt.core.c",
    from = "if (msg->payloadlen < 0 || (size_t)msg->payloadlen > c->max_payload) {",
    to = "if (msg->payloadlen < 0) {",
    specs = MQTT,
    why = "a message longer than max_payload is queued: a broker can make the device hold anything" },

  ---------------------------------------------------------------- the connection
  { name = "mqtt-no-pings", file = "scripts/fotahost/mqtt.lua",
    from = 'stream.wait(c, fd, raw:want_write() and "w" or "r", math.min(deadline, now() + 1))',
    to = 'stream.wait(c, fd, raw:want_write() and "w" or "r", deadline)',
    specs = MQTT,
    why = "a client waiting in receive() sends no keepalive ping: the broker drops it, its will goes out" },

  { name = "mqtt-suback-refusal-ignored", file = "scripts/fotahost/mqtt.lua",
    from = "  if granted == 0x80 then\n",
    to = "  if granted == nil then\n",
    specs = MQTT,
    why = "a refused subscription is reported as granted (QoS 128): the client waits for messages that never come" },

  ---------------------------------------------------------------- TLS
  { name = "mqtt-verify-peer-off", file = "plugins/mqtt.core.c",
    from = "mosquitto_tls_opts_set(c->mosq, 1 /* SSL_VERIFY_PEER */, NULL, NULL)",
    to = "mosquitto_tls_opts_set(c->mosq, 0 /* SSL_VERIFY_PEER */, NULL, NULL)",
    specs = MQTT,
    why = "a broker certificate no trusted CA signed is accepted" },
  { name = "mqtt-insecure-default", file = "scripts/fotahost/mqtt.lua",
    from = "insecure = opts.insecure == true,",
    to = "insecure = opts.insecure ~= false,",
    specs = MQTT,
    why = "verification is off unless a script asks for it" },
  { name = "mqtt-insecure-silent", file = "scripts/fotahost/mqtt.lua",
    from = "  if opts.insecure then\n    log.warn(",
    to = "  if false then\n    log.warn(",
    specs = MQTT,
    why = "verification turned off leaves no trace in the log" },

  ---------------------------------------------------------------- the MCS transport
  { name = "mqtt-channel-clean-session", file = "scripts/fotahost/mcs/mqtt_channel.lua",
    from = "clean_session = false,", to = "clean_session = true,",
    specs = { "spec/mqtt_fota_spec.lua" }, filter = "persistent session",
    why = "a push sent while the board was offline is lost: the broker kept no session for it" },
  { name = "mqtt-channel-no-will", file = "scripts/fotahost/mcs/mqtt_channel.lua",
    from = "    will = { topic = base .. ONLINE, payload = \",online,0\", qos = 1, retain = true },\n",
    to = "",
    specs = { "spec/mqtt_fota_spec.lua" }, filter = "mosquitto_pub",
    why = "a board that lost power stays online for the cloud" },
  { name = "mqtt-channel-publisher-off", file = "scripts/fotahost/mcs/mqtt_channel.lua",
    from = "  ctx.publisher(function(points)", to = "  local _ = (function(points)",
    specs = { "spec/mqtt_fota_spec.lua" }, filter = "mosquitto_pub",
    why = "the statuses go to REST only: a cloud on the broker never hears them" },
  { name = "mqtt-channel-clean-stop-silent", file = "scripts/fotahost/mcs/mqtt_channel.lua",
    from = [[c:close { topic = base .. ONLINE, payload = ",online,0", retain = true }]], to = "c:close()",
    specs = { "spec/mqtt_fota_spec.lua" }, filter = "persistent session",
    why = "a board stopped cleanly stays online for the cloud (its retained ,online,1)" },
}
