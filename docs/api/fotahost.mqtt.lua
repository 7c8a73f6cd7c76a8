---@meta fotahost.mqtt
-- API stub for script authors (LuaLS). Two modules:
-- * fotahost.mqtt (Lua: scripts/fotahost/mqtt.lua): MQTT 3.1.1 clients;
--   what scripts use;
-- * fotahost.mqtt.core (C plugin: plugins/mqtt.core.c): one libmosquitto
--   client that never waits and runs no thread, driven by fotahost.mqtt.
--
-- Every wait happens in the scheduler when called from a task (other tasks
-- and clients keep running), or in a private poller otherwise. A client is
-- serviced (read, written, pinged for its keepalive) only while one of its
-- calls waits, at least once a second then: keep a task in receive(). When
-- two tasks wait on one client, one drives the socket and the other looks
-- for its own answer every 50 ms.
--
-- libmosquitto's callbacks only record events in the C client (never a
-- call into Lua); the Lua side reads them after each step.
--
-- Failures return `nil, why`: for connect "<url>: <cause>" with the URL's
-- user:password masked; misuse (a missing client_id, a wrong type, a call
-- on a closed client) raises. The password is registered with
-- fotahost.log as a secret (4 characters or more: fotahost.log masks no
-- shorter secret). TLS verification (chain and host name) is on unless
-- `insecure = true`, which is logged as a warning on every connect. Host
-- names are looked up by libmosquitto's getaddrinfo, which may block the
-- process briefly; numeric addresses never wait.
--
-- Resources: 3 fds per client (the socket, and a wake-up socket pair
-- libmosquitto makes for threaded use, unused here), plus one epoll fd
-- while a client is used outside any task. Measured on x86-64 (300 idle
-- clients, subscribed, after one warm-up): about 4 KiB of RSS per plain
-- client, 46 KiB per TLS client.
---@class fotahost.mqtt
local mqtt = {}

---@class fotahost.mqtt.Will
---@field topic string
---@field payload string? default ""
---@field qos integer? 0, 1 or 2; default 0
---@field retain boolean? default false

---@class fotahost.mqtt.Options
---@field url string "mqtt://host[:1883]" or "mqtts://host[:8883]" (TLS); user:password@ in it are used when username/password are not given
---@field client_id string required, non-empty
---@field clean_session boolean? default false: a persistent session (subscriptions and QoS 1/2 messages kept by the broker while away)
---@field username string?
---@field password string? a log secret
---@field cafile string? PEM CA certificates to trust instead of the system's
---@field capath string? a directory of hashed CA certificates
---@field insecure boolean? no TLS verification at all (logged)
---@field keepalive integer? seconds, default 60 (5..65535)
---@field will fotahost.mqtt.Will? published by the broker if the connection is lost without close()
---@field connect_timeout number? seconds to the CONNACK, default 10; also the limit for a SUBACK or PUBACK
---@field max_payload integer? bytes, default 8192: a longer incoming message is never kept (counters.too_long); libmosquitto reads each packet whole first, so a hostile broker can still make a client hold one packet (MQTT allows 256 MB) while it arrives
---@field max_queue integer? received messages kept until receive(), default 64: more drop the oldest (counters.dropped)

---Connects, waiting for the CONNACK. Causes: "refused: bad credentials
---(user name or password)" (CONNACK 4), "refused: not authorised (bad
---credentials, or no access for this client)" (5: mosquitto's answer to a
---wrong password too), "refused: client id rejected", "TLS failure:
---error:...:certificate verify failed", "timeout: no CONNACK after 10 s",
---"Connection refused", "cannot resolve HOST".
---```lua
---local c, err = mqtt.connect{ url = "mqtt://127.0.0.1:1883", client_id = "fotahost-Dbxx9k" }
---```
---@param opts fotahost.mqtt.Options
---@return fotahost.mqtt.Client|nil client
---@return string? err "<url>: <cause>"
function mqtt.connect(opts) end

---libmosquitto's version, e.g. "libmosquitto 2.0.11".
---@return string
function mqtt.version() end

---@class fotahost.mqtt.Counters
---@field received integer messages the broker delivered (too long and dropped ones included)
---@field dropped integer dropped from a full queue (the oldest first)
---@field too_long integer over max_payload, never queued

---A connected client; also closed by `<close>` and by the garbage
---collector.
---@class fotahost.mqtt.Client
---@field session_present boolean from the CONNACK: the broker kept this client id's session
---@field counters fotahost.mqtt.Counters a fresh table on each read (the last values after close())
---@field name string the URL, masked
local Client = {}

---Subscribes to a topic filter and waits for the SUBACK. mosquitto 2.0.11
---grants a subscription its ACL denies (and delivers nothing on it)
---rather than refusing it.
---@param topic string
---@param qos? integer default 1
---@return integer|nil granted the QoS the broker granted
---@return string? err "subscription to TOPIC refused by the broker" (SUBACK 0x80), "timeout", "closed: why"
function Client:subscribe(topic, qos) end

---Publishes. QoS 0 returns once the message is written to the socket (or
---queued in libmosquitto when the socket is full); QoS 1 and 2 wait for
---the broker's acknowledgement, `connect_timeout` seconds at most.
---@param topic string
---@param payload string
---@param qos? integer default 0
---@param retain? boolean default false
---@return true|nil ok
---@return string? err "timeout", "closed: why", or libmosquitto's reason (a bad topic)
function Client:publish(topic, payload, qos, retain) end

---The next received message, oldest first, waiting at most `timeout`
---seconds (nil: for ever). Messages kept before the connection was lost
---are still returned; then "closed: why" ("closed: the broker closed the
---connection", "closed: keepalive lost (no answer from the broker)").
---@param timeout? number
---@return string|nil topic
---@return string payload_or_err the payload, or "timeout" / "closed: why"
function Client:receive(timeout) end

---Sends DISCONNECT when still connected (the broker then drops the will)
---and frees the client. Safe twice. `final`: a last message published at
---QoS 0 just before, without waiting (for a clean end, what the will
---would have said).
---@param final? { topic: string, payload: string, retain: boolean? }
function Client:close(final) end
