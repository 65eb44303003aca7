-- The firewall's HAProxy adapter: the action `lua.firewall`, run for routes with rules, reads
-- the policy from txn.fw (a map lookup by route); a block sets txn.fw_block, a detection
-- names the rules in txn.fw_rules (the frontend answers 403 or adds x-firewall-rules).
core.register_action("firewall", { "http-req" }, function(txn)
  local text = txn:get_var("txn.fw")
  if text == nil then return end
  local policy = firewall.policy(text)
  local url = txn.f:url()
  local path, query
  if string.sub(url, 1, 1) == "/" then
    local q = string.find(url, "?", 1, true)
    path = q and string.sub(url, 1, q - 1) or url
    query = q and string.sub(url, q + 1) or nil
  else
    path, query = txn.f:path(), txn.f:query()
  end
  local request = {
    method = txn.f:method(),
    target = url,
    path = path,
    query = query,
    header = function(name)
      local values, i = {}, 1
      while true do
        local value = txn.f:req_fhdr(name, i)
        if value == nil then return values end
        values[i] = value
        i = i + 1
      end
    end,
    headers = function()
      local list = {}
      for name, values in pairs(txn.http:req_get_headers()) do
        local i = 0
        while values[i] ~= nil do
          list[#list + 1] = { name, values[i] }
          i = i + 1
        end
      end
      return list
    end,
    body = function() return string.sub(txn.f:req_body() or "", 1, firewall.BODY_BYTES) end,
  }
  local hits = firewall.check(policy, request)
  if #hits == 0 then return end
  local names = table.concat(hits, ",")
  if policy.block then
    txn:log(core.warning, "firewall blocked: " .. names)
    txn:set_var("txn.fw_block", 1)
  else
    txn:log(core.warning, "firewall detected: " .. names)
    txn:set_var("txn.fw_rules", names)
  end
end)
