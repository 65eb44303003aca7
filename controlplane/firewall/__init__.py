"""The firewall: what both compilers share (the policy data the Lua core reads, regex
programs, the Lua sources) and the CRS verdict service (`controlplane waf-serve`), which no
compiler imports."""
