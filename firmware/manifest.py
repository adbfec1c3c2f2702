metadata(description="Replenish device firmware (portable core + ESP32 layer)", version="0.1.0")

package("replenish")
package("hw")
module("main.py")
