optim_wrapper = dict(optimizer=dict(type='AdamW', lr=0.001, weight_decay=0.05))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1000)
