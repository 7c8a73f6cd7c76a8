-- Mutants of the virtual board (dev/plugins/vboard.core.c): where a reset
-- starts, as the ATmega32U4's fuses say, and the slide through an erased
-- boot section. A board that gets these wrong passes firmware a real board
-- would hang on, or hangs on firmware a real board runs.
local VBOARD = "dev/plugins/vboard.core.c"
local SPEC = "spec/vboard_spec.lua"

return {
  { name = "vboard-bootrst-ignored", file = VBOARD,
    from = [[    if (hfuse & 1)
        return 0;]],
    to = [[    if (hfuse & 1 || 1)
        return 0;]],
    specs = { SPEC },
    why = "a merged bootloader is never run: one that hangs still lets the sketch blink (issue 15)" },
  { name = "vboard-bootsz-ignored", file = VBOARD,
    from = "return VB_FLASH_SIZE - (512u << (3 - bootsz));",
    to = "return VB_FLASH_SIZE - 4096u;",
    specs = { SPEC },
    why = "a boot section of another size starts at Caterina's address all the same" },
  { name = "vboard-no-wrap-at-flash-end", file = VBOARD,
    from = "if (state == cpu_Crashed && ran_off_flash(b)) {",
    to = "if (state == cpu_Crashed && ran_off_flash(b) && 0) {",
    specs = { SPEC },
    why = "a sketch on a chip whose bootloader was erased stops dead, where the real chip slides and runs it" },
}
