-- An example /etc/fotahost/config.lua (or point $FOTAHOST_CONFIG at a copy).
-- Every key is checked when fotahost starts; `fotahost doctor` checks the rest.
-- On OpenWrt, /etc/config/fotahost (uci set fotahost.main.KEY=...) sets the
-- same keys (http's as http_KEY) and wins where both set one; hooks live here.
return {
  device_id = "Dbxx9k",                  -- from the MCS console
  device_key = "TPJVxxxxxxxxBxBv",       -- ditto; never printed in logs
  api = "https://api.mediatek.com",      -- or the local cloud: "http://192.168.1.10:8080"
  board = "linkit-smart-7688-duo",       -- or "sim" for the virtual board
  -- sim_dir = "/var/lib/fotahost/sim",  -- the simulated chip, when board = "sim"
  -- journal, images, last-known-good: storage a power cut keeps (the default is
  -- /etc/fotahost/state on OpenWrt, whose /var is a RAM disk; /var/lib/fotahost elsewhere)
  -- state_dir = "/etc/fotahost/state",
  -- volatile_state_ok = false,         -- true allows a state_dir on tmpfs/ramfs
  status_channel = "fota_status",        -- data channel for progress and results
  backend = "gpiod",                     -- GPIO access: gpiod, sysfs or mmio
  lock = 0x0F,                           -- lock bits after a flash, as the tutorial; false: none
  -- serial_baud = 57600,                -- the sketch's Serial1 rate (fotahost doctor opens it so)
  -- HTTP, for the MCS API and the firmware downloads (every key is checked):
  -- http = {
  --   timeout = 600,         -- s a firmware download may take, retries included
  --   min_rate = 256,        -- B/s it must average (0: no check), once it has
  --   min_rate_after = 60,   --   run this many seconds
  --   cainfo = "/etc/ssl/certs/ca-certificates.crt",  -- or capath = a directory
  --   -- connect_timeout = 10, retries = 3, retry_delay = 1, ...
  -- },
  -- Keep the Caterina USB bootloader across the chip erase:
  -- bootloader = "/etc/arduino/Caterina-smart7688.hex",
  -- An image that carries another bootloader (the IDE's
  -- sketch.ino.with_bootloader.hex with a different one) is refused unless:
  -- allow_bootloader_update = true,
  -- Flash only firmware signed with minisign by one of these keys (a list:
  -- old and new during a key rotation); see the README, "Signed firmware".
  -- Without it, unsigned firmware is accepted, with a warning every time.
  -- trusted_keys = { "/etc/fotahost/keys/fotahost.pub" },

  -- Hooks: each gets the job ({ version, md5, url, ... }) and returns true,
  -- or nil and a reason to stop the update.
  -- health_check = function(job)
  --   -- e.g. ask the new sketch over /dev/ttyS0 whether it runs
  --   return true
  -- end,
}
