python train_imagenet.py --batch-size 40 --num-gpus 4 -j 32 --mode hybrid --num-epochs 480 --lr 0.045 --wd 0.00004 --lr-decay 0.98 --lr-decay-period 1 --model mobilenetv2_1.0
