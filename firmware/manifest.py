# Freeze the device firmware into a custom MicroPython build (ports/esp32), e.g.
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/replenish/firmware/manifest.py
# Unix-port-only files (main_unix.py, hw/unix.py) are left out; main.py
# stays a file on the filesystem (MicroPython runs it as source at start-up).
metadata(description="Replenish device firmware (portable core + ESP32 layer)", version="0.2.0")

include("$(PORT_DIR)/boards/manifest.py")
package("replenish")
package("hw", files=["__init__.py", "chips.py", "esp32.py"])
# The OTA boot stage; an update's slot (/ota/b<build>) comes first on sys.path, so its
# replenish/ and hw/ win over the frozen ones (docs/fleet.md).
module("otaboot.py")
