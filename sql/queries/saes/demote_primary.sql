-- A new primary SAE of model $model demotes the model's others: one SAE stands for a model.
UPDATE saes SET is_primary = false WHERE model = $model;
