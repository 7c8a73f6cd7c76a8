-- Mutants of the local cloud on a broker (dev/scripts/fotahost/mcs_cloud/broker.lua)
-- and of the mosquitto configuration it gets (broker_config.lua): a topic's
-- key checked, each device kept to its own topics, the password file
-- private, pushes not retained.
local SPEC = { "spec/cloud_mqtt_spec.lua" }
local P = "dev/scripts/fotahost/mcs_cloud/"
local BROKER, CONFIG, RUNNER = P .. "broker.lua", P .. "broker_config.lua", P .. "rollout_runner.lua"

return {
  { name = "cloud-mqtt-wrong-key-accepted", file = BROKER,
    from = "if not same_secret(key, dev.key) then",
    to = "if false then",
    specs = SPEC,
    why = "anyone who knows a device id (every device may publish on its own mcs/<id>/...) speaks for it:"
      .. " data points, fota_status, its connected state" },
  { name = "cloud-mqtt-acl-widened", file = CONFIG,
    from = [["pattern readwrite mcs/%u/#",]],
    to = [["pattern readwrite mcs/#",]],
    specs = SPEC,
    why = "every device reads every other device's topics, keys included, and can push firmware to them" },
  { name = "cloud-mqtt-passwd-mode", file = CONFIG,
    from = [[ok, err = sys.write_file(passwd, table.concat(users, "\n") .. "\n", PRIVATE)]],
    to = [[ok, err = sys.write_file(passwd, table.concat(users, "\n") .. "\n")]],
    specs = SPEC, filter = "broker%-config",
    why = "the password file is world-readable: its plain passwords until mosquitto_passwd hashes them,"
      .. " its hashes after (offline guessing)" },
  { name = "cloud-mqtt-push-retained", file = BROKER,
    from = "local ok, err = b.client:publish(topic, payload, 1, false)",
    to = "local ok, err = b.client:publish(topic, payload, 1, true)",
    specs = SPEC,
    why = "a push is retained: every later subscription (each reconnect of the device) gets the old FOTA again" },
  { name = "cloud-mqtt-rollout-tcp-only", file = RUNNER,
    from = "local since = dev.conn and dev.conn.since or dev.mqtt_since",
    to = "local since = dev.conn and dev.conn.since",
    specs = SPEC, filter = "rolls a firmware out",
    why = "a rollout waits forever for devices reached through the broker: they are never pushed" },
  { name = "broker-config-client-ids-free", file = "dev/scripts/fotahost/mcs_cloud/broker_config.lua",
    from = [["use_username_as_clientid true",]], to = "",
    specs = { "spec/cloud_mqtt_spec.lua" }, filter = "writes mosquitto.conf",
    why = "a device connects under the cloud's client id (or another device's) and takes over its session" },
}
