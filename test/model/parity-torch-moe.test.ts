// The lens on Qwen3-MoE as torch.onnx.export writes it (test/model/torch-parity.ts): sparse MoE
// MLPs (router softmax, top-k, every expert weighted) on layers 0 and 2, a dense MLP on layer 1.
import { torchParityTests } from './torch-parity.js';

torchParityTests(['qwen3_moe']);
