-- A market leader reads its market's last fill at takeover (the centre of the price band):
-- without this index that is a backwards scan of every market's fills.
CREATE INDEX IF NOT EXISTS fills_market_id ON fills (market, id);
