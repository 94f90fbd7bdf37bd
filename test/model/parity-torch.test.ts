// The lens on Llama, Qwen2 and Gemma as torch.onnx.export writes them (test/model/torch-parity.ts).
import { torchParityTests } from './torch-parity.js';

torchParityTests(['llama', 'qwen2', 'gemma']);
