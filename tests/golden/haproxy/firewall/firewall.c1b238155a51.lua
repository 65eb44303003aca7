local firewall = (function()
-- The firewall's shared core: the L7 checks both proxies run, the same code on Envoy
-- (LuaJIT) and HAProxy (Lua 5.3). Its only input from the model is a policy's data text
-- (controlplane/firewall/policy.py), parsed once per text; a proxy's adapter hands it the
-- request as {method, target, path, query, header = function(name) -> {values...},
-- headers = function() -> {{name, value}, ...}, body = function() -> text} (names in lower
-- case; the functions are called only when a rule reads what they return) and acts on the
-- names of the rules that matched.
local M = {}

M.BLOCKED_BODY = "blocked by the firewall\n"
M.BODY_BYTES = 8192

local function unhex(h) return string.char(tonumber(h, 16)) end

local function unpct(s)
  if not string.find(s, "%", 1, true) then return s end
  return (string.gsub(s, "%%(%x%x)", unhex))
end

local function split(s, sep)
  local out, start = {}, 1
  while true do
    local i = string.find(s, sep, start, true)
    if not i then
      out[#out + 1] = string.sub(s, start)
      return out
    end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end

-- regex programs (controlplane/firewall/nfa.py): a Pike VM, linear in the value's length

local function parse_program(text)
  local program = {}
  for _, word in ipairs(split(text, " ")) do
    local op = string.sub(word, 1, 1)
    local ins = { op = op }
    if op == "c" then
      local set = {}
      for i = 2, #word, 4 do
        local lo = tonumber(string.sub(word, i, i + 1), 16)
        local hi = tonumber(string.sub(word, i + 2, i + 3), 16)
        for c = lo, hi do set[c] = true end
      end
      ins.set = set
    elseif op == "s" then
      local a, b = string.match(word, "^s(%d+):(%d+)$")
      ins.a, ins.b = tonumber(a), tonumber(b)
    elseif op == "j" then
      ins.a = tonumber(string.sub(word, 2))
    elseif op == "a" then
      ins.k = string.sub(word, 2)
    end
    program[#program + 1] = ins
  end
  return program
end

local function is_word(c)
  return c ~= nil and ((c >= 48 and c <= 57) or (c >= 65 and c <= 90)
    or (c >= 97 and c <= 122) or c == 95)
end

local function holds(k, s, i)
  local n = #s
  local prev = i > 1 and string.byte(s, i - 1) or nil
  local cur = i <= n and string.byte(s, i) or nil
  if k == "A" then return i == 1
  elseif k == "z" then return i == n + 1
  elseif k == "Z" then return i == n + 1 or (i == n and cur == 10)
  elseif k == "^" then return i == 1 or prev == 10
  elseif k == "$" then return i == n + 1 or cur == 10
  elseif k == "b" then return is_word(prev) ~= is_word(cur)
  elseif k == "B" then return is_word(prev) == is_word(cur)
  end
  return false
end

-- The bytes a match can begin with (nil when the program can match the empty value): a
-- search skips, without running the machine, the positions where no thread is alive and the
-- byte cannot begin a match.
local function first_bytes(program)
  local first, marks, stack = {}, {}, { 1 }
  while #stack > 0 do
    local p = stack[#stack]
    stack[#stack] = nil
    if not marks[p] then
      marks[p] = true
      local ins = program[p]
      if ins.op == "m" then return nil
      elseif ins.op == "j" then stack[#stack + 1] = ins.a
      elseif ins.op == "s" then
        stack[#stack + 1] = ins.a
        stack[#stack + 1] = ins.b
      elseif ins.op == "a" then stack[#stack + 1] = p + 1
      else
        for c in pairs(ins.set) do first[c] = true end
      end
    end
  end
  return first
end

local function compile(text)
  local program = parse_program(text)
  program.first = first_bytes(program)
  program.anchored = program[1].op == "a" and program[1].k == "A"
  return program
end

local function search(program, s)
  local marks, n, first, stack = {}, #s, program.first, {}
  -- adds the threads at pc for position i to list (count long): its new length, or -1 on a
  -- match
  local function add(list, count, pc, i)
    local top = 1
    stack[1] = pc
    while top > 0 do
      local p = stack[top]
      top = top - 1
      if marks[p] ~= i then
        marks[p] = i
        local ins = program[p]
        local op = ins.op
        if op == "m" then return -1
        elseif op == "j" then
          top = top + 1
          stack[top] = ins.a
        elseif op == "s" then
          stack[top + 1] = ins.b
          stack[top + 2] = ins.a
          top = top + 2
        elseif op == "a" then
          if holds(ins.k, s, i) then
            top = top + 1
            stack[top] = p + 1
          end
        else
          count = count + 1
          list[count] = p
        end
      end
    end
    return count
  end
  local current, following, alive = {}, {}, 0
  local i = 1
  while i <= n + 1 do
    if alive == 0 and i > 1 and program.anchored then return false end
    if alive == 0 and first then
      while i <= n and not first[string.byte(s, i)] do i = i + 1 end
      if i > n then return false end
    end
    alive = add(current, alive, 1, i)
    if alive < 0 then return true end
    if i > n then break end
    local c = string.byte(s, i)
    local next_alive = 0
    for k = 1, alive do
      local p = current[k]
      if program[p].set[c] then
        next_alive = add(following, next_alive, p + 1, i + 1)
        if next_alive < 0 then return true end
      end
    end
    current, following, alive = following, current, next_alive
    i = i + 1
  end
  return false
end

M.search = function(program_text, s) return search(compile(program_text), s) end

-- transforms

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
  end
  if cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40,
      0x80 + cp % 0x40)
  end
  return string.char(0xF0 + math.floor(cp / 0x40000), 0x80 + math.floor(cp / 0x1000) % 0x40,
    0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local ENTITIES = { lt = "<", gt = ">", amp = "&", quot = '"', apos = "'", nbsp = "\194\160" }

local function entity(body, semicolon)
  local cp
  if string.match(body, "^#[xX]%x+$") then
    cp = tonumber(string.sub(body, 3), 16)
  elseif string.match(body, "^#%d+$") then
    cp = tonumber(string.sub(body, 2))
  else
    local named = semicolon == ";" and ENTITIES[string.lower(body)]
    if named then return named end
    return nil
  end
  if cp == nil or cp < 1 or cp > 0x10FFFF then return nil end
  return utf8_char(cp)
end

local TRANSFORMS = {
  url_decode = function(s)
    if not string.find(s, "[%%+]") then return s end
    return unpct((string.gsub(s, "%+", " ")))
  end,
  lowercase = string.lower,
  compress_whitespace = function(s) return (string.gsub(s, "[ \t\r\n\f\v]+", " ")) end,
  html_entity_decode = function(s)
    return (string.gsub(s, "&(#?%w+)(;?)", function(body, semicolon)
      local decoded = entity(body, semicolon)
      if decoded == nil then return nil end
      return decoded
    end))
  end,
}

-- policies

local function matcher(kind, text)
  if kind == "x" then
    local program = compile(text)
    return function(value) return search(program, value) end
  end
  return function(value) return string.find(value, text, 1, true) ~= nil end
end

local function parse_policy(text)
  local policy = { rules = {} }
  for _, item in ipairs(split(text, ";")) do
    local key, value = string.match(item, "^(%w+)=(.*)$")
    if key == "m" then
      policy.block = value == "b"
    elseif key == "me" then
      policy.methods = {}
      for _, method in ipairs(split(value, ",")) do policy.methods[method] = true end
    elseif key == "ua" then
      policy.user_agents = {}
      for _, entry in ipairs(split(value, ",")) do
        local kind = string.sub(entry, 1, 1)
        policy.user_agents[#policy.user_agents + 1] = matcher(kind, unpct(string.sub(entry, 2)))
      end
    elseif key == "ex" then
      policy.extensions = {}
      for _, ext in ipairs(split(value, ",")) do policy.extensions[unpct(ext)] = true end
    elseif key == "su" then policy.max_url = tonumber(value)
    elseif key == "sh" then policy.max_header = tonumber(value)
    elseif key == "sb" then policy.max_body = tonumber(value)
    elseif key == "pr" then policy.protocol = true
    elseif key == "r" then
      local parts = split(value, ",")
      local rule = {
        name = unpct(parts[1]), on = parts[2], field = unpct(parts[3]), transforms = {},
        matchers = {}, key = parts[2] .. "," .. parts[3] .. "," .. parts[4],
      }
      if parts[4] ~= "" then
        for _, name in ipairs(split(unpct(parts[4]), "+")) do
          rule.transforms[#rule.transforms + 1] = TRANSFORMS[name]
        end
      end
      for i = 6, #parts do rule.matchers[#rule.matchers + 1] = matcher(parts[5], unpct(parts[i])) end
      if rule.on == "body" then policy.reads_body = true end
      policy.rules[#policy.rules + 1] = rule
    end
  end
  return policy
end

local cache, cached = {}, 0

function M.policy(text)
  local policy = cache[text]
  if policy == nil then
    if cached >= 1000 then cache, cached = {}, 0 end
    policy = parse_policy(text)
    cache[text] = policy
    cached = cached + 1
  end
  return policy
end

-- a request's values

local function cookie(request, name)
  for _, line in ipairs(request.header("cookie")) do
    for _, part in ipairs(split(line, ";")) do
      local key, value = string.match(part, "^%s*([^=]-)%s*=%s*(.-)%s*$")
      if key == name then return value end
    end
  end
  return nil
end

local function values_on(rule, request)
  if rule.on == "path" then return { request.path } end
  if rule.on == "query" then return { request.query } end
  if rule.on == "header" then return request.header(string.lower(rule.field)) end
  if rule.on == "cookie" then return { cookie(request, rule.field) } end
  return { request.body() }
end

-- The values a rule reads after its transforms, computed once per request for all the rules
-- that read the same values through the same transforms.
local function transformed(rule, request, seen)
  local values = seen[rule.key]
  if values == nil then
    values = {}
    for _, value in ipairs(values_on(rule, request)) do
      for _, transform in ipairs(rule.transforms) do value = transform(value) end
      values[#values + 1] = value
    end
    seen[rule.key] = values
  end
  return values
end

local function rule_matches(rule, request, seen)
  for _, value in ipairs(transformed(rule, request, seen)) do
    for _, match in ipairs(rule.matchers) do
      if match(value) then return true end
    end
  end
  return false
end

local function bad_escape(s)
  return s ~= nil and string.find(s, "%", 1, true) ~= nil
    and string.find((string.gsub(s, "%%%x%x", "")), "%", 1, true) ~= nil
end

local function extension(path)
  local segment = string.match(unpct(path), "([^/]*)$")
  local ext = string.match(segment, "%.([^.]*)$")
  return ext and string.lower(ext)
end

-- The names of the rules `request` matches, in the policy's order.
function M.check(policy, request)
  local hits = {}
  if policy.methods and not policy.methods[request.method] then hits[#hits + 1] = "methods" end
  if policy.user_agents then
    for _, agent in ipairs(request.header("user-agent")) do
      local lowered, found = string.lower(agent), false
      for _, match in ipairs(policy.user_agents) do
        if match(lowered) then found = true end
      end
      if found then
        hits[#hits + 1] = "user_agents"
        break
      end
    end
  end
  if policy.extensions then
    local ext = extension(request.path)
    if ext and policy.extensions[ext] then hits[#hits + 1] = "file_extensions" end
  end
  if policy.max_url and #request.target > policy.max_url then hits[#hits + 1] = "max_sizes.url" end
  if policy.max_header then
    for _, pair in ipairs(request.headers()) do
      if #pair[1] + 2 + #pair[2] > policy.max_header then
        hits[#hits + 1] = "max_sizes.header"
        break
      end
    end
  end
  if policy.max_body then
    for _, length in ipairs(request.header("content-length")) do
      if (tonumber(length) or 0) > policy.max_body then
        hits[#hits + 1] = "max_sizes.body"
        break
      end
    end
  end
  if policy.protocol then
    -- Several Host or Content-Length headers, or a list in Content-Length, never get here:
    -- both proxies' HTTP/1.1 parsers refuse them or merge them into one (docs/model.md).
    local hosts = request.header("host")
    if #hosts ~= 1 or hosts[1] == "" or bad_escape(request.path) or bad_escape(request.query) then
      hits[#hits + 1] = "protocol"
    end
  end
  local seen = {}
  for _, rule in ipairs(policy.rules) do
    if rule_matches(rule, request, seen) then hits[#hits + 1] = rule.name end
  end
  return hits
end

return M
end)()

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
