-- The orders a group's failure listed for cancellation and refund, so that a payment for a
-- failed group whose order was not listed is listed (and refunded) too, once.
ALTER TABLE group_buys ADD COLUMN failed_orders text[] NOT NULL DEFAULT '{}';
