-- The firewall's Envoy adapter (envoy.filters.http.lua, enabled only on routes with rules):
-- the policy is the route's metadata `policy`; a block answers 403, a detection is named in
-- the response's x-firewall-rules header.
local NAMESPACE = "envoy.filters.http.lua"

function envoy_on_request(handle)
  local text = handle:metadata():get("policy")
  if text == nil then return end
  local policy = firewall.policy(text)
  local headers = handle:headers()
  local target = headers:get(":path") or ""
  local q = string.find(target, "?", 1, true)
  local request = {
    method = headers:get(":method"),
    target = target,
    path = q and string.sub(target, 1, q - 1) or target,
    query = q and string.sub(target, q + 1) or nil,
    -- the header map is asked again each time: a reference taken before the body was read
    -- is no longer valid after it
    header = function(name)
      local values, current = {}, handle:headers()
      local key = name == "host" and ":authority" or name
      for i = 0, current:getNumValues(key) - 1 do values[#values + 1] = current:getAtIndex(key, i) end
      return values
    end,
    headers = function()
      local list = {}
      for name, value in pairs(handle:headers()) do
        if name == ":authority" then
          list[#list + 1] = { "host", value }
        elseif string.sub(name, 1, 1) ~= ":" then
          list[#list + 1] = { name, value }
        end
      end
      return list
    end,
    body = function()
      local body = handle:body()
      if body == nil then return "" end
      local n = body:length()
      if n > firewall.BODY_BYTES then n = firewall.BODY_BYTES end
      return body:getBytes(0, n)
    end,
  }
  local hits = firewall.check(policy, request)
  if #hits == 0 then return end
  local names = table.concat(hits, ",")
  if policy.block then
    handle:logWarn("firewall blocked: " .. names)
    handle:respond({ [":status"] = "403", ["content-type"] = "text/plain" }, firewall.BLOCKED_BODY)
  else
    handle:logWarn("firewall detected: " .. names)
    handle:streamInfo():dynamicMetadata():set(NAMESPACE, "rules", names)
  end
end

function envoy_on_response(handle)
  local found = handle:streamInfo():dynamicMetadata():get(NAMESPACE)
  if found ~= nil and found.rules ~= nil then
    handle:headers():add("x-firewall-rules", found.rules)
  end
end
