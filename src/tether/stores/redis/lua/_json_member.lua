-- The runtime's block in state (see _core.keep_runtime_block): an application's new state keeps
-- the stored one. json_member finds a top-level member's value in a stored JSON object by
-- scanning it, not decoding it (cjson would round big integers and turn {} into []), so the
-- block is copied byte for byte; strings are skipped whole, so a brace, a quote or a
-- RUNTIME_KEY inside one is never taken for structure.
-- a literal: Redis 7.0 runs a function library's top level without the string library
local QUOTE_OR_ESCAPE = '["\\]'
local function string_end(s, i)  -- i at a string's opening quote: the closing quote's index
  while true do
    i = string.find(s, QUOTE_OR_ESCAPE, i + 1)
    if string.byte(s, i) == 34 then return i end
    i = i + 1  -- the escaped character
  end
end
local function value_end(s, i)  -- i at a value's first character: its last character's index
  local c = string.byte(s, i)
  if c == 34 then return string_end(s, i) end
  if c ~= 123 and c ~= 91 then return string.find(s, '[%s,}%]]', i) - 1 end
  local depth = 0
  while true do
    i = string.find(s, '[{}%[%]"]', i)
    c = string.byte(s, i)
    if c == 34 then
      i = string_end(s, i)
    elseif c == 123 or c == 91 then
      depth = depth + 1
    else
      depth = depth - 1
      if depth == 0 then return i end
    end
    i = i + 1
  end
end
local function json_member(s, key)
  local i = string.find(s, '%S')
  if not i or string.byte(s, i) ~= 123 then return nil end
  i = string.find(s, '%S', i + 1)
  while i and string.byte(s, i) == 34 do
    local e = string_end(s, i)
    local v = string.find(s, '%S', string.find(s, ':', e + 1, true) + 1)
    local last = value_end(s, v)
    if string.sub(s, i + 1, e - 1) == key then return string.sub(s, v, last) end
    i = string.find(s, '%S', last + 1)
    if string.byte(s, i) ~= 44 then return nil end  -- '}': no such member
    i = string.find(s, '%S', i + 1)
  end
  return nil
end
local function keep_runtime_block(fields)
  local block = json_member(redis.call('HGET', H, 'state') or '{}', RUNTIME_KEY)
  if not block then return end
  for i = 1, #fields, 2 do
    if fields[i] == 'state' then
      local new = fields[i + 1]
      local head = new == '{}' and '{' or (string.sub(new, 1, -2) .. ',')
      fields[i + 1] = head .. '"' .. RUNTIME_KEY .. '":' .. block .. '}'
    end
  end
end
